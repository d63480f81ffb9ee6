package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
)

// stateSource is one broker's state as `pending`, `grants list` and
// `audit` read it: through the running broker's API or, when no broker
// runs on the state directory, from the directory itself, read-only. A
// wrap's broker lives only while its client is connected, and its audit
// log must stay readable after.
type stateSource struct {
	dir   string
	label string // the BROKER column and the audit lines' label
	api   *apiClient
	store broker.Store // the bbolt file opened read-only, or the database; nil with api
}

func (s *stateSource) close() {
	if s.store != nil {
		s.store.Close()
	}
}

// sources finds the state the command reads: the running brokers in scope
// (the one of --state-dir or AIRLOCK_STATE_DIR, or every one under the
// state home); when none runs, the state directories in scope, opened
// read-only, each said so on stderr. The caller closes them.
func (f *adminFlags) sources(stderr io.Writer) ([]*stateSource, error) {
	dir, explicit, err := f.dir()
	if err != nil {
		return nil, err
	}
	dirs := brokerDirs(dir, !explicit)
	refs, err := runningBrokers(dirs)
	if err != nil {
		return nil, err
	}
	var out []*stateSource
	for _, r := range refs {
		out = append(out, &stateSource{dir: r.Dir, label: brokerLabel(r.Dir), api: &apiClient{ref: r, http: &http.Client{Timeout: 30 * time.Second}}})
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, d := range dirs {
		path := filepath.Join(d, dbFile)
		if _, err := os.Stat(path); err != nil {
			src, err := databaseSource(context.Background(), d, stderr)
			if err != nil {
				closeSources(out)
				return nil, err
			}
			if src != nil {
				out = append(out, src)
			}
			continue
		}
		st, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
		if errors.Is(err, boltstore.ErrLocked) {
			closeSources(out)
			return nil, fmt.Errorf("no broker has its API open for %s, but a process holds its database %s: a broker starting or stopping, or one started without writing %s; try again", d, path, apiInfoFile)
		}
		if err != nil {
			closeSources(out)
			return nil, err
		}
		note := fmt.Sprintf("no broker is running for %s: read the state directory directly, read-only", d)
		if n, torn := st.Unmoved(); n > 0 || torn > 0 {
			if n > 0 {
				note += fmt.Sprintf("; %d audit records read from its journal (%s%s), which the next broker moves into the database", n, dbFile, ".journal")
			}
			if torn > 0 {
				note += fmt.Sprintf("; the journal ends in %d bytes that are not an intact record (a torn write, or damage), left unread and unchanged", torn)
			}
		}
		fmt.Fprintln(stderr, termSafe(note))
		out = append(out, &stateSource{dir: d, label: brokerLabel(d), store: st})
	}
	if len(out) > 0 {
		return out, nil
	}
	if env := stateEnv(); env != "" {
		// Where no state directory is at hand, as on a machine that runs
		// no replica: the database the environment names.
		if err := checkDatabaseURL(env, false); err != nil {
			return nil, fmt.Errorf("%s: %w", envDatabaseURL, err)
		}
		st, err := openDatabase(context.Background(), env, "", nil)
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(stderr, termSafe(fmt.Sprintf("no broker is running for %s: read the database %s (%s) directly", dir, redactURL(env), envDatabaseURL)))
		return []*stateSource{{dir: dir, label: redactURL(env), store: st}}, nil
	}
	if explicit {
		return nil, fmt.Errorf("no Airlock broker is running for %s, and it holds no Airlock state (no %s, no %s)", dir, dbFile, databaseFile)
	}
	return nil, fmt.Errorf("no Airlock broker is running and no Airlock state was found in %s or its wrap-* directories; start `airlock serve` or `airlock wrap`, or name another state directory with --state-dir", dir)
}

// databaseSource is the PostgreSQL database a state directory's broker
// uses (its database.json), opened for a command to read; nil when the
// directory names none.
func databaseSource(ctx context.Context, dir string, stderr io.Writer) (*stateSource, error) {
	info, ok, err := readDatabaseInfo(dir)
	if err != nil || !ok {
		return nil, err
	}
	dbURL, password, err := info.url()
	if err != nil {
		return nil, fmt.Errorf("the state directory %s: %w", dir, err)
	}
	st, err := openDatabase(ctx, dbURL, password, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(stderr, termSafe(fmt.Sprintf("no broker is running for %s: read its database %s directly", dir, info.Postgres)))
	return &stateSource{dir: dir, label: brokerLabel(dir), store: st}, nil
}

func closeSources(ss []*stateSource) {
	for _, s := range ss {
		s.close()
	}
}

// brokerLabel names a broker by its state directory: a wrap's under the
// state home by its directory's name (wraps, or an older wrap-NAME), any
// other by its path,
// with the home directory shortened to ~.
func brokerLabel(dir string) string {
	if home, err := stateHome(); err == nil && filepath.Dir(filepath.Clean(dir)) == filepath.Clean(home) &&
		(strings.HasPrefix(filepath.Base(dir), "wrap-") || filepath.Base(dir) == wrapsDir) {
		return filepath.Base(dir)
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" && strings.HasPrefix(dir, h+string(filepath.Separator)) {
		return "~" + dir[len(h):]
	}
	return dir
}

// pending lists the calls waiting for approval. Without a running
// broker none waits: a held call waits only while its broker runs.
func (s *stateSource) pending(ctx context.Context) ([]*broker.Approval, error) {
	if s.api == nil {
		return nil, nil
	}
	var res struct{ Approvals []*broker.Approval }
	if err := s.api.do(ctx, http.MethodGet, "/api/v1/approvals?status=pending&limit=1000", nil, &res); err != nil {
		return nil, err
	}
	return res.Approvals, nil
}

func (s *stateSource) grants(ctx context.Context, all bool) ([]*broker.Grant, error) {
	if s.store != nil {
		q := broker.GrantQuery{Limit: 1000}
		if !all {
			q.Status = []broker.GrantStatus{broker.GrantActive}
		}
		return s.store.Grants(ctx, q)
	}
	path := "/api/v1/grants?limit=1000"
	if !all {
		path += "&status=active"
	}
	var res struct{ Grants []*broker.Grant }
	if err := s.api.do(ctx, http.MethodGet, path, nil, &res); err != nil {
		return nil, err
	}
	return res.Grants, nil
}

// audit lists records as broker.Store.Audit does: the newest first, or
// the oldest first after q.After.
func (s *stateSource) audit(ctx context.Context, q broker.AuditQuery) ([]*broker.AuditRecord, error) {
	if s.store != nil {
		return s.store.Audit(ctx, q)
	}
	params := url.Values{}
	for k, v := range map[string]string{"server": q.Server, "tool": q.Tool, "event": q.Event, "actor": q.Actor} {
		if v != "" {
			params.Set(k, v)
		}
	}
	params.Set("limit", fmt.Sprint(max(q.Limit, 1)))
	if q.After > 0 {
		params.Set("after", fmt.Sprint(q.After))
	}
	var res struct{ Records []*broker.AuditRecord }
	if err := s.api.do(ctx, http.MethodGet, "/api/v1/audit?"+params.Encode(), nil, &res); err != nil {
		return nil, err
	}
	return res.Records, nil
}

func (s *stateSource) verify(ctx context.Context) (broker.AuditVerification, error) {
	if s.store != nil {
		return s.store.VerifyAudit(ctx)
	}
	var v broker.AuditVerification
	err := s.api.do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &v)
	return v, err
}

// labelled is an audit record with the broker it came from, for audit
// across several brokers.
type labelled struct {
	broker string
	rec    *broker.AuditRecord
}

// byTime orders records of several brokers by time, then by broker and
// sequence number, so that the merge is stable. One broker's stay in
// sequence order: a record written late has an earlier time.
func byTime(rs []labelled, several bool) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if several && !a.rec.Time.Equal(b.rec.Time) {
			return a.rec.Time.Before(b.rec.Time)
		}
		if a.broker != b.broker {
			return a.broker < b.broker
		}
		return a.rec.Seq < b.rec.Seq
	})
}

// followAudit prints the newest q.Limit records of every source, merged by
// time and labelled when there are several, then with follow the new ones
// as they are written, until ctx ends.
func followAudit(ctx context.Context, out, stderr io.Writer, srcs []*stateSource, q broker.AuditQuery, follow, jsonOut bool) error {
	print := auditPrinter(out, jsonOut, len(srcs) > 1)
	limit := max(q.Limit, 1)
	last := make([]uint64, len(srcs)) // the newest record printed, per source
	var recs []labelled
	for i, s := range srcs {
		first := q
		first.Limit = limit
		rs, err := s.audit(ctx, first)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label, err)
		}
		for _, r := range rs {
			recs = append(recs, labelled{s.label, r})
			last[i] = max(last[i], r.Seq)
		}
	}
	byTime(recs, len(srcs) > 1)
	if len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	for _, r := range recs {
		print(r.broker, r.rec)
	}
	if !follow {
		return nil
	}
	if !slices.ContainsFunc(srcs, func(s *stateSource) bool { return s.api != nil }) {
		fmt.Fprintln(stderr, "nothing to follow: no broker is running, so no record is being written")
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		var batch []labelled
		for i, s := range srcs {
			next := q
			next.Limit, next.After = 1000, last[i]
			rs, err := s.audit(ctx, next)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s: %w", s.label, err)
			}
			if last[i] == 0 {
				// Nothing was printed yet, so this is the newest first.
				slices.Reverse(rs)
			}
			for _, r := range rs {
				batch = append(batch, labelled{s.label, r})
				last[i] = max(last[i], r.Seq)
			}
		}
		byTime(batch, len(srcs) > 1)
		for _, r := range batch {
			print(r.broker, r.rec)
		}
	}
}
