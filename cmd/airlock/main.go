// Command airlock is a human-in-the-loop approval broker for MCP tool calls.
//
// It sits between an MCP client and the MCP servers that can do damage, judges
// every tools/call with a Rego policy, and holds risky calls until a person
// approves them. See README.md for a tour.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "airlock:", termText(ee.msg))
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "airlock:", termText(err.Error()))
		os.Exit(1)
	}
}

// exitError carries a specific exit status out of a subcommand.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
