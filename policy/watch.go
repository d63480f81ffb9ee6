package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the directory must stay quiet before a reload. An
// editor's save is several events (write, chmod, rename); a `git checkout`
// is many. Reloading once after they settle avoids compiling half a change.
const debounce = 200 * time.Millisecond

// Watch reloads the policy whenever a file under the directory changes,
// including files in subdirectories created later. It blocks until ctx is
// done and then returns nil; with the embedded library there is nothing to
// watch and it just waits. Reload failures are logged and kept in Status;
// they do not stop the watch.
func (e *Engine) Watch(ctx context.Context) error {
	if e.src.fsys != nil {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.src.root, err)
	}
	defer w.Close()
	if err := addTree(w, e.src.root); err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.src.root, err)
	}
	e.log.Info("watching policy directory", "dir", e.src.root)

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Every event counts, even for hidden names: a Kubernetes
			// ConfigMap updates by swapping its hidden ..data symlink.
			if ev.Has(fsnotify.Create) && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
				// A new directory (mkdir, or a tool that swaps a whole
				// tree in by rename) needs its own watches.
				if err := addTree(w, ev.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
					e.log.Warn("policy watch failed to add directory", "dir", ev.Name, "err", err)
				}
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: reload anyway so nothing is missed.
			e.log.Warn("policy watch error", "dir", e.src.root, "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			_ = e.Reload(ctx) // logged and kept in Status by Reload
		}
	}
}

// addTree watches root and every directory below it, skipping hidden ones
// as load does. root may be a file, which needs nothing: its directory is
// already watched.
func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}
