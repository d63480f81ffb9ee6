package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// measure runs Decide in the benchmark loop and reports the latency
// percentiles besides the mean: a broker cares about the slow calls.
func measure(b *testing.B, e *Engine, in *Input, want Action) {
	b.Helper()
	ctx := b.Context()
	lat := make([]time.Duration, 0, 1<<16)
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		d = e.Decide(ctx, in)
		lat = append(lat, time.Since(start))
	}
	if d.Action != want || d.Ref != "" {
		b.Fatalf("decision = %+v, want %s", d, want)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkDecide decides with the default library on its three main
// paths: "evaluated" runs the policy every time, "remembered" finds the
// decision learnt from the first call (see decisions).
func BenchmarkDecide(b *testing.B) {
	e, err := New(b.Context(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	fresh, err := New(b.Context(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer fresh.Close()
	fresh.cur.Load().decisions = nil
	for _, c := range []struct {
		name   string
		change func(*Input)
		want   Action
	}{
		{"read-only allow", func(in *Input) {
			in.Tool.Name, in.Tool.Annotations = "read_file", json.RawMessage(`{"readOnlyHint":true}`)
		}, Allow},
		{"hold", func(*Input) {}, Hold},
		{"changed tool hold", func(in *Input) { in.Tool.Changed = true }, Hold},
	} {
		in := call()
		c.change(in)
		b.Run(c.name+"/evaluated", func(b *testing.B) { measure(b, fresh, in, c.want) })
		b.Run(c.name+"/remembered", func(b *testing.B) { measure(b, e, in, c.want) })
	}
	b.Run("parallel/evaluated", func(b *testing.B) {
		in := call()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d := fresh.Decide(b.Context(), in); d.Action != Hold {
					b.Errorf("decision = %+v", d)
				}
			}
		})
	})
}

// BenchmarkDecideGrants puts many matching grants in input.grants. The
// broker passes only the grants that match the call, so real inputs carry a
// handful; this shows the cost per grant the policy has to check.
func BenchmarkDecideGrants(b *testing.B) {
	e, err := New(b.Context(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			in := call()
			for i := range n {
				in.Grants = append(in.Grants, Grant{
					ID:        fmt.Sprintf("g%05d", i),
					Scope:     ScopeTool,
					CreatedBy: "bob",
					ExpiresAt: callTime.Add(time.Duration(i+1) * time.Minute),
				})
			}
			measure(b, e, in, Allow)
		})
	}
}

// BenchmarkInput compares building the Rego input directly with the JSON
// round trip it replaces.
func BenchmarkInput(b *testing.B) {
	in := call()
	in.Tool.Annotations = json.RawMessage(`{"destructiveHint":true,"title":"Write"}`)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := in.value(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct with memo", func(b *testing.B) {
		var m memo
		b.ReportAllocs()
		for b.Loop() {
			if _, err := in.value(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json round trip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, err := json.Marshal(in)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ast.ValueFromReader(bytes.NewReader(raw)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDigest(b *testing.B) {
	args := []byte(`{"path":"/srv/data/report.txt","content":"hello, world","mode":420,"options":{"overwrite":true,"backup":false}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(args)))
	for b.Loop() {
		if _, err := Digest(args); err != nil {
			b.Fatal(err)
		}
	}
}
