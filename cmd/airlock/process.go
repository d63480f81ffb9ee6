package main

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with this pid exists, so that the
// CLI skips the api.json of a broker that was killed.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
