package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
)

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Move the broker's state between stores",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStateCopyCmd())
	return cmd
}

func newStateCopyCmd() *cobra.Command {
	var from, to, passwordFile string
	cmd := &cobra.Command{
		Use:   "copy --from bolt:PATH --to postgres://USER@HOST/DB [--password-file FILE]",
		Short: "Copy a bbolt state directory into an empty PostgreSQL database",
		Long: `copy copies the approvals, grants, token records, tools first seen and the
audit log of a bbolt store (a state directory, or its airlock.db) into an
empty PostgreSQL database, then checks the audit chain on both sides and
that they end in the same record.

No broker may run on the source: stop it first (the copy opens it
read-only, which its lock refuses while a broker holds it). A destination
that holds anything is refused. The --to URL carries no password (a
command line is visible to every user); the password comes from
--password-file, or PGPASSWORD, or ~/.pgpass. Without --to, the database
is AIRLOCK_DATABASE_URL's, which may carry one.

Approvals still pending in the source are copied as pending: the broker
that held them is gone, so the first replica to start on the database
marks them abandoned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dbURL, password, err := copyDestination(to, passwordFile)
			if err != nil {
				return err
			}
			srcPath, err := boltSource(from)
			if err != nil {
				return err
			}
			src, err := boltstore.Open(srcPath, boltstore.Options{ReadOnly: true})
			if errors.Is(err, boltstore.ErrLocked) {
				return fmt.Errorf("state copy: %s is in use by a running broker: stop it first, so that the copy misses nothing it writes", srcPath)
			}
			if err != nil {
				return fmt.Errorf("state copy: %w", err)
			}
			defer src.Close()
			ctx := cmd.Context()
			dst, err := openDatabase(ctx, dbURL, password, nil)
			if err != nil {
				return err
			}
			defer dst.Close()
			n, err := copyState(ctx, src, dst)
			if err != nil {
				return fmt.Errorf("state copy: %w", err)
			}
			n.print(cmd.OutOrStdout(), "bolt:"+srcPath, redactURL(dbURL))
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the source: bolt:PATH, a state directory or its airlock.db")
	cmd.Flags().StringVar(&to, "to", "", "the destination: postgres://USER@HOST:PORT/DB, without a password (default: AIRLOCK_DATABASE_URL)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "a file (mode 0600) holding the database password")
	return cmd
}

// copyDestination is the database to copy to and its password: --to
// (which may not carry a password) or AIRLOCK_DATABASE_URL (which may),
// and the password file's contents.
func copyDestination(to, passwordFile string) (dbURL, password string, err error) {
	switch {
	case to != "":
		if err := checkDatabaseURL(to, false); err != nil {
			return "", "", fmt.Errorf("state copy: --to: %w", err)
		}
		if urlHasPassword(to) {
			return "", "", errors.New("state copy: --to carries a password, which every user of this machine can read on a command line; " +
				"remove it and give it with --password-file or PGPASSWORD")
		}
		dbURL = to
	case stateEnv() != "":
		if err := checkDatabaseURL(stateEnv(), false); err != nil {
			return "", "", fmt.Errorf("state copy: %s: %w", envDatabaseURL, err)
		}
		dbURL = stateEnv()
	default:
		return "", "", fmt.Errorf("state copy: name the database with --to postgres://USER@HOST/DB (or %s)", envDatabaseURL)
	}
	if passwordFile == "" {
		return dbURL, "", nil
	}
	if urlHasPassword(dbURL) {
		return "", "", fmt.Errorf("state copy: --password-file is given and %s carries a password too; give the password once", envDatabaseURL)
	}
	if password, err = readSecretFile(passwordFile); err != nil {
		return "", "", fmt.Errorf("state copy: --password-file: %w", err)
	}
	return dbURL, password, nil
}

// boltSource is the bbolt file --from names: bolt:DIR (a state directory)
// or bolt:FILE.
func boltSource(from string) (string, error) {
	path, ok := strings.CutPrefix(from, "bolt:")
	if !ok || path == "" {
		return "", fmt.Errorf("state copy: --from %q: write bolt:PATH, PATH a state directory or its %s", from, dbFile)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("state copy: --from: %w", err)
	}
	if st.IsDir() {
		path = filepath.Join(path, dbFile)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("state copy: --from: the directory holds no %s: %w", dbFile, err)
		}
	}
	return path, nil
}

// toolLister is a store that can list its tool records; a destination
// that cannot is checked for them tool by tool (SeenTool's answer).
type toolLister interface {
	ToolRecords(ctx context.Context) ([]*broker.ToolRecord, error)
}

// copied counts what copyState copied.
type copied struct {
	approvals, pending, grants, tokens, tools int
	audit                                     uint64
	headHash                                  string
}

func (n copied) print(w io.Writer, from, to string) {
	fmt.Fprintf(w, "Copied %s to %s:\n", termSafe(from), termSafe(to))
	fmt.Fprintf(w, "  approvals  %d", n.approvals)
	if n.pending > 0 {
		fmt.Fprintf(w, " (%d pending, copied as pending: the broker that held them is gone, and the first replica to start marks them abandoned)", n.pending)
	}
	fmt.Fprintf(w, "\n  grants     %d\n  tokens     %d\n  tools      %d\n", n.grants, n.tokens, n.tools)
	if n.audit == 0 {
		fmt.Fprintln(w, "  audit log  empty")
		return
	}
	fmt.Fprintf(w, "  audit log  %d records; both chains verify and end in record %d, hash %s\n", n.audit, n.audit, n.headHash)
}

// copyPage is how many records copyState reads, and appends, at a time.
const copyPage = 1000

// copyState copies everything src holds into dst, which must be empty.
// Records are created as they are, with no audit record of their own, and
// the audit log is appended oldest first: dst seals each record with the
// same sequence number and previous hash as src did, and sealing is
// deterministic, so the chain comes out the same, hash for hash. Any
// difference stops the copy.
func copyState(ctx context.Context, src *boltstore.Store, dst broker.Store) (copied, error) {
	var n copied
	sv, err := src.VerifyAudit(ctx)
	if err != nil {
		return n, fmt.Errorf("verifying the source's audit log: %w", err)
	}
	if !sv.OK {
		return n, fmt.Errorf("the source's audit log is broken at record %d (%s): nothing copied", sv.BrokenSeq, sv.Problem)
	}
	if err := checkEmpty(ctx, dst); err != nil {
		return n, err
	}

	tools, err := src.ToolRecords(ctx)
	if err != nil {
		return n, err
	}
	for _, t := range tools {
		got, err := dst.SeenTool(ctx, t)
		if err != nil {
			return n, fmt.Errorf("copying tool %s/%s: %w", t.Server, t.Tool, err)
		}
		if got.Fingerprint != t.Fingerprint || !got.FirstSeen.Equal(t.FirstSeen) {
			return n, fmt.Errorf("the destination already knows tool %s/%s, first seen %s: it is not empty", t.Server, t.Tool, got.FirstSeen)
		}
		n.tools++
	}

	tokens, err := src.Tokens(ctx)
	if err != nil {
		return n, err
	}
	for _, t := range slices.Backward(tokens) {
		if err := dst.CreateToken(ctx, t, nil); err != nil {
			return n, fmt.Errorf("copying token %s: %w", t.ID, err)
		}
		n.tokens++
	}

	grants, err := all(func(before string) ([]*broker.Grant, error) {
		return src.Grants(ctx, broker.GrantQuery{Before: before, Limit: copyPage})
	}, func(g *broker.Grant) string { return g.ID })
	if err != nil {
		return n, err
	}
	for _, g := range slices.Backward(grants) {
		if err := dst.CreateGrant(ctx, g, nil); err != nil {
			return n, fmt.Errorf("copying grant %s: %w", g.ID, err)
		}
		n.grants++
	}

	approvals, err := all(func(before string) ([]*broker.Approval, error) {
		return src.Approvals(ctx, broker.ApprovalQuery{Before: before, Limit: copyPage})
	}, func(a *broker.Approval) string { return a.ID })
	if err != nil {
		return n, err
	}
	for _, a := range slices.Backward(approvals) {
		if err := dst.CreateApproval(ctx, a, nil); err != nil {
			return n, fmt.Errorf("copying approval %s: %w", a.ID, err)
		}
		n.approvals++
		if a.Status == broker.StatusPending {
			n.pending++
		}
	}

	for seq := uint64(1); seq <= sv.Records; seq += copyPage {
		// Newest first below seq+copyPage: records seq to seq+copyPage-1.
		page, err := src.Audit(ctx, broker.AuditQuery{Before: seq + copyPage, Limit: copyPage})
		if err != nil {
			return n, err
		}
		slices.Reverse(page)
		hashes := make([]string, len(page))
		for i, r := range page {
			if r.Seq != seq+uint64(i) {
				return n, fmt.Errorf("the source's audit log gave record %d where %d was due", r.Seq, seq+uint64(i))
			}
			hashes[i] = r.Hash
		}
		if err := dst.AppendAudit(ctx, page...); err != nil {
			return n, fmt.Errorf("appending audit records %d to %d: %w", seq, seq+uint64(len(page))-1, err)
		}
		for i, r := range page { // sealed again by dst
			if r.Seq != seq+uint64(i) || r.Hash != hashes[i] {
				return n, fmt.Errorf("audit record %d came out as record %d with hash %s in the destination, not %s: the chains differ", seq+uint64(i), r.Seq, r.Hash, hashes[i])
			}
		}
		n.audit += uint64(len(page))
	}
	if n.audit != sv.Records {
		return n, fmt.Errorf("copied %d audit records of the source's %d", n.audit, sv.Records)
	}

	dv, err := dst.VerifyAudit(ctx)
	if err != nil {
		return n, fmt.Errorf("verifying the destination's audit log: %w", err)
	}
	if !dv.OK || dv.Records != sv.Records {
		return n, fmt.Errorf("the destination's audit log does not verify after the copy: %d records, broken at %d (%s)", dv.Records, dv.BrokenSeq, dv.Problem)
	}
	sh, err := auditHead(ctx, src)
	if err != nil {
		return n, err
	}
	dh, err := auditHead(ctx, dst)
	if err != nil {
		return n, err
	}
	if sh != dh {
		return n, fmt.Errorf("the chains end differently: the source in record %d, hash %s; the destination in record %d, hash %s", sh.seq, sh.hash, dh.seq, dh.hash)
	}
	n.headHash = sh.hash
	return n, nil
}

type head struct {
	seq  uint64
	hash string
}

func auditHead(ctx context.Context, s broker.Store) (head, error) {
	rs, err := s.Audit(ctx, broker.AuditQuery{Limit: 1})
	if err != nil || len(rs) == 0 {
		return head{}, err
	}
	return head{rs[0].Seq, rs[0].Hash}, nil
}

// checkEmpty refuses a destination that holds anything: copying into one
// would mix two histories and could not reproduce the audit chain.
func checkEmpty(ctx context.Context, dst broker.Store) error {
	var what []string
	if as, err := dst.Approvals(ctx, broker.ApprovalQuery{Limit: 1}); err != nil {
		return err
	} else if len(as) > 0 {
		what = append(what, "approvals")
	}
	if gs, err := dst.Grants(ctx, broker.GrantQuery{Limit: 1}); err != nil {
		return err
	} else if len(gs) > 0 {
		what = append(what, "grants")
	}
	if ts, err := dst.Tokens(ctx); err != nil {
		return err
	} else if len(ts) > 0 {
		what = append(what, "tokens")
	}
	if rs, err := dst.Audit(ctx, broker.AuditQuery{Limit: 1}); err != nil {
		return err
	} else if len(rs) > 0 {
		what = append(what, "audit records")
	}
	if tl, ok := dst.(toolLister); ok {
		if ts, err := tl.ToolRecords(ctx); err != nil {
			return err
		} else if len(ts) > 0 {
			what = append(what, "tools")
		}
	}
	if len(what) > 0 {
		return fmt.Errorf("the destination is not empty (it holds %s): copy only into a database no broker has used", strings.Join(what, ", "))
	}
	return nil
}

// all reads every record of a listing that pages newest first by id.
func all[T any](page func(before string) ([]*T, error), id func(*T) string) ([]*T, error) {
	var out []*T
	before := ""
	for {
		p, err := page(before)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
		if len(p) < copyPage {
			return out, nil
		}
		before = id(p[len(p)-1])
	}
}
