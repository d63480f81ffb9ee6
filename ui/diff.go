package ui

import (
	"encoding/json"
	"strings"

	"github.com/airlock-mcp/airlock/broker"
)

// diffLine is one line of a line diff: Op is ' ' (both), '-' (only in the
// old text) or '+' (only in the new).
type diffLine struct {
	Op   byte
	Text string
}

func (l diffLine) class() string {
	switch l.Op {
	case '+':
		return "diff-add"
	case '-':
		return "diff-del"
	}
	return "diff-same"
}

// definitionDiff compares the tool's definition as first seen with the one
// the call was made against; nil when the tool has not changed. A rug pull
// often hides in a description, so descriptions are compared line by line.
func definitionDiff(a *broker.Approval) []diffLine {
	if len(a.PreviousDefinition) == 0 || a.Definition == nil {
		return nil
	}
	// The same strict read as the gate's: an approver compares what the
	// policy compared.
	prev, err := broker.ParseDefinition(a.PreviousDefinition)
	if err != nil {
		return []diffLine{{'-', string(a.PreviousDefinition)}, {'+', definitionText(a.Definition)}}
	}
	return lineDiff(strings.Split(definitionText(prev), "\n"), strings.Split(definitionText(a.Definition), "\n"))
}

// definitionText writes a definition as text for comparing: the fields
// that make up its fingerprint, JSON with sorted keys.
func definitionText(d *broker.ToolDefinition) string {
	var b strings.Builder
	b.WriteString("name: " + d.Name + "\n")
	if d.Title != "" {
		b.WriteString("title: " + d.Title + "\n")
	}
	b.WriteString("description:\n")
	for line := range strings.SplitSeq(d.Description, "\n") {
		b.WriteString("    " + line + "\n")
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"annotations", d.Annotations}, {"inputSchema", d.InputSchema}, {"outputSchema", d.OutputSchema}} {
		if len(f.raw) == 0 {
			continue
		}
		b.WriteString(f.name + ":\n")
		for line := range strings.SplitSeq(canonical(f.raw), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// lineDiff returns the lines of a and b aligned on a longest common
// subsequence. Tool definitions are a few hundred lines at most, so the
// quadratic table is cheap.
func lineDiff(a, b []string) []diffLine {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{' ', a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{'-', a[i]})
			i++
		default:
			out = append(out, diffLine{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{'-', a[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{'+', b[j]})
	}
	return out
}
