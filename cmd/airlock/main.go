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
	// A client that dies takes its ends of wrap's stdout and stderr with
	// it. Go's default is to exit on SIGPIPE from a write to fd 1 or 2,
	// before wrap has recorded anything; taking the signal makes such a
	// write fail with EPIPE instead, and wrap withdraws the client's held
	// calls, records it and cleans up. (Notify, not Ignore: an ignored
	// signal would stay ignored in the servers Airlock starts.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
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
