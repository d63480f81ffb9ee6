package pool

import (
	"bytes"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// goroutineID reads the running goroutine's number from its stack trace.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// Work after work reuses the goroutine; an idle one leaves after keepIdle,
// or at once when the pool stops. synctest fails the test if any
// goroutine is left behind.
func TestPoolKeepsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		p := New(stop)
		ran := make(chan string)
		p.Go(func() { ran <- goroutineID() })
		first := <-ran
		synctest.Wait() // the goroutine is idle again
		p.Go(func() { ran <- goroutineID() })
		if again := <-ran; again != first {
			t.Errorf("second work ran on goroutine %s, want the kept %s", again, first)
		}

		time.Sleep(keepIdle + time.Second)
		synctest.Wait()
		p.Go(func() { ran <- goroutineID() })
		if later := <-ran; later == first {
			t.Errorf("after %v idle, work still ran on goroutine %s", keepIdle, first)
		}

		synctest.Wait()
		close(stop) // ends the idle goroutine before keepIdle
		synctest.Wait()
		select {
		case p.work <- func() {}:
			t.Error("an idle goroutine outlived stop")
		default:
		}
	})
}

// A burst larger than maxIdle leaves maxIdle goroutines waiting, no more.
func TestPoolKeepsAtMostMaxIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		p := New(stop)
		release := make(chan struct{})
		for range maxIdle + 50 {
			p.Go(func() { <-release })
		}
		synctest.Wait()
		if n := p.idle.Load(); n != 0 {
			t.Fatalf("%d idle while all work runs", n)
		}
		close(release)
		synctest.Wait()
		if n := p.idle.Load(); n != maxIdle {
			t.Errorf("%d goroutines kept after a burst of %d, want %d", n, maxIdle+50, maxIdle)
		}
		if n := runtime.NumGoroutine(); n > maxIdle+5 {
			t.Errorf("%d goroutines after the burst, want about %d", n, maxIdle)
		}
	})
}
