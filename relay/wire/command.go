package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// DefaultGrace is how long a child gets after stdin closes before SIGTERM,
// and again after SIGTERM before SIGKILL.
const DefaultGrace = 5 * time.Second

// Command describes an MCP server run as a child process over stdio.
type Command struct {
	Path string
	Args []string
	// Env is the complete environment; nil inherits Airlock's.
	Env []string
	Dir string
	// Stderr receives the child's stderr; nil discards it.
	Stderr io.Writer
	// Grace is the wait between the shutdown steps; 0 means DefaultGrace.
	Grace time.Duration
	// MaxMessage bounds one message from the child; 0 means DefaultMaxMessage.
	MaxMessage int
}

// Child is a running upstream server. It is a JSON-RPC connection to the
// child's stdin and stdout; Close stops the process.
type Child struct {
	*LineConn
	cmd   *exec.Cmd
	stdin io.WriteCloser
	grace time.Duration

	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // set before exited is closed

	stopOnce sync.Once
}

// Start spawns the child.
func (c *Command) Start() (*Child, error) {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stderr = c.Stderr
	// Its own process group, so that a wrapper like npx and the server it
	// starts are signalled together; Pdeathsig so a killed broker does not
	// leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Our own pipes rather than StdoutPipe: Wait closes those as soon as the
	// process exits, which can drop the last message a dying server wrote.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("wire: start %s: %w", c.Path, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("wire: start %s: %w", c.Path, err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	cmd.WaitDelay = time.Second // a grandchild holding stderr open must not stall Wait
	err = cmd.Start()
	inR.Close() // the child has its own copies now
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("wire: start %s: %w", c.Path, err)
	}
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	ch := &Child{
		LineConn: NewLineConn(outR, inW, outR, c.MaxMessage),
		cmd:      cmd,
		stdin:    inW,
		grace:    grace,
		exited:   make(chan struct{}),
	}
	go func() {
		ch.waitErr = cmd.Wait()
		close(ch.exited)
	}()
	return ch, nil
}

// Read returns the next message from the child. Once the child has exited
// and its output is drained, it returns an *ExitError.
func (c *Child) Read(ctx context.Context) (jsonrpc.Message, error) {
	msg, err := c.LineConn.Read(ctx)
	if err != nil && !isParseError(err) {
		// Its stdout is closed: the server has exited or is about to; make
		// sure of it before reporting how it ended.
		c.stop()
		return nil, &ExitError{Err: c.waitErr, State: c.cmd.ProcessState}
	}
	return msg, err
}

func isParseError(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}

// Exited is closed when the process has ended.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Close stops the child the way MCP's stdio transport asks: close its stdin,
// then SIGTERM, then SIGKILL, each after the grace period. It returns once
// the process is gone.
func (c *Child) Close() error {
	c.stop()
	c.LineConn.Close()
	return nil
}

func (c *Child) stop() {
	c.stopOnce.Do(func() {
		c.stdin.Close()
		if c.waitFor(c.grace) {
			return
		}
		c.signal(syscall.SIGTERM)
		if c.waitFor(c.grace) {
			return
		}
		c.signal(syscall.SIGKILL)
		<-c.exited
	})
}

func (c *Child) waitFor(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}

// signal signals the child's whole process group.
func (c *Child) signal(sig syscall.Signal) {
	if err := syscall.Kill(-c.cmd.Process.Pid, sig); err != nil {
		_ = c.cmd.Process.Signal(sig)
	}
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// ExitError reports that an upstream child process ended.
type ExitError struct {
	Err   error
	State *os.ProcessState
}

func (e *ExitError) Error() string { return "process " + e.Status() }

// Status says how the process ended: "exited with status 3", "was killed
// by signal 9 (killed)".
func (e *ExitError) Status() string {
	if e.State == nil {
		return fmt.Sprintf("ended: %v", e.Err)
	}
	return describeExit(e.State)
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the child's exit status, or -1 when a signal ended it.
func (e *ExitError) ExitCode() int {
	if e.State == nil {
		return -1
	}
	return e.State.ExitCode()
}

func describeExit(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}
