package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func approvalJSON(t *testing.T, id string) []byte {
	t.Helper()
	data, err := json.Marshal(&Approval{ID: id, Status: StatusPending})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// endingContext ends, by its Err, when ended is set; its Done never
// closes, so a context.AfterFunc on it never runs and only Publish's own
// check keeps a watcher on it from being called.
type endingContext struct {
	context.Context
	ended *atomic.Bool
}

func (c endingContext) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

func TestFeedSkipsEndedWatchers(t *testing.T) {
	var fd ApprovalFeed
	var ended, live int
	var end atomic.Bool
	if err := fd.Watch(endingContext{t.Context(), &end}, func(*Approval) { ended++ }); err != nil {
		t.Fatal(err)
	}
	if err := fd.Watch(t.Context(), func(*Approval) { live++ }); err != nil {
		t.Fatal(err)
	}
	if err := fd.Publish(approvalJSON(t, "01A")); err != nil {
		t.Fatal(err)
	}
	end.Store(true)
	if err := fd.Publish(approvalJSON(t, "01B")); err != nil {
		t.Fatal(err)
	}
	if ended != 1 || live != 2 {
		t.Errorf("the ending watcher was called %d times, the live one %d; want 1 (before it ended) and 2", ended, live)
	}
	var never int
	if err := fd.Watch(endingContext{t.Context(), &end}, func(*Approval) { never++ }); err != nil {
		t.Fatal(err)
	}
	if err := fd.Publish(approvalJSON(t, "01C")); err != nil {
		t.Fatal(err)
	}
	if never != 0 {
		t.Errorf("a watcher whose context had ended was called %d times", never)
	}
	if n := fd.watching(); n != 1 {
		t.Errorf("%d watchers after publishing, want the live one alone", n)
	}
}

// A watcher whose context ends is removed even when nothing is published,
// so that it does not stay until the store closes.
func TestFeedForgetsEndedWatchers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fd ApprovalFeed
		ctx, cancel := context.WithCancel(t.Context())
		if err := fd.Watch(ctx, func(*Approval) {}); err != nil {
			t.Fatal(err)
		}
		timed, stop := context.WithTimeout(t.Context(), time.Minute)
		defer stop()
		if err := fd.Watch(timed, func(*Approval) {}); err != nil {
			t.Fatal(err)
		}
		if n := fd.watching(); n != 2 {
			t.Fatalf("%d watchers, want 2", n)
		}
		cancel()
		synctest.Wait()
		if n := fd.watching(); n != 1 {
			t.Errorf("%d watchers after one context was cancelled, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := fd.watching(); n != 0 {
			t.Errorf("%d watchers after the other context timed out, want 0", n)
		}
	})
}

func TestFeedClose(t *testing.T) {
	var fd ApprovalFeed
	called := 0
	if err := fd.Watch(t.Context(), func(*Approval) { called++ }); err != nil {
		t.Fatal(err)
	}
	fd.Close()
	if n := fd.watching(); n != 0 {
		t.Errorf("%d watchers after Close", n)
	}
	if err := fd.Watch(t.Context(), func(*Approval) { called++ }); !errors.Is(err, ErrFeedClosed) {
		t.Errorf("Watch after Close = %v, want ErrFeedClosed", err)
	}
	if err := fd.Publish(approvalJSON(t, "01A")); err != nil || called != 0 {
		t.Errorf("Publish after Close: %v, %d calls; want none", err, called)
	}
}

func TestFeedRefusesBadInput(t *testing.T) {
	var fd ApprovalFeed
	if err := fd.Watch(t.Context(), nil); err == nil {
		t.Error("Watch with a nil function succeeded")
	}
	called := 0
	if err := fd.Watch(t.Context(), func(*Approval) { called++ }); err != nil {
		t.Fatal(err)
	}
	if err := fd.Publish([]byte(`{"id":`)); err == nil || called != 0 {
		t.Errorf("Publish of broken JSON: %v, %d calls; want an error and none", err, called)
	}
}
