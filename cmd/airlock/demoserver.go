package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// sandbox is the MCP server built into `airlock demo`: a few file tools,
// read-only and destructive, named as in the reference filesystem server so
// that the filesystem example policy knows them. Like that server, it
// refuses any path outside its directory itself, whatever the policy said.
type sandbox struct {
	root string // symlinks resolved
}

type pathArgs struct {
	Path string `json:"path" jsonschema:"an absolute path inside the sandbox"`
}

type writeArgs struct {
	Path    string `json:"path" jsonschema:"an absolute path inside the sandbox"`
	Content string `json:"content" jsonschema:"the file's new content"`
}

type moveArgs struct {
	Source      string `json:"source" jsonschema:"an absolute path inside the sandbox"`
	Destination string `json:"destination" jsonschema:"an absolute path inside the sandbox"`
}

func newSandboxServer(root string) (*mcp.Server, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("demo: sandbox: %w", err)
	}
	sb := &sandbox{root: real}
	s := mcp.NewServer(&mcp.Implementation{Name: "airlock-demo-sandbox", Version: version()}, &mcp.ServerOptions{
		Instructions: "Files in the sandbox directory " + root + ". Paths must be absolute and inside it.",
	})
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	yes := true
	destructive := &mcp.ToolAnnotations{DestructiveHint: &yes}
	mcp.AddTool(s, &mcp.Tool{Name: "list_directory", Title: "List directory", Annotations: readOnly,
		Description: "List the files and directories in a directory of the sandbox."}, sb.list)
	mcp.AddTool(s, &mcp.Tool{Name: "read_text_file", Title: "Read text file", Annotations: readOnly,
		Description: "Read a file of the sandbox as text."}, sb.read)
	mcp.AddTool(s, &mcp.Tool{Name: "get_file_info", Title: "Get file info", Annotations: readOnly,
		Description: "Report a file's size, mode and modification time."}, sb.info)
	mcp.AddTool(s, &mcp.Tool{Name: "write_file", Title: "Write file", Annotations: destructive,
		Description: "Create a file, or overwrite an existing one, with new content."}, sb.write)
	mcp.AddTool(s, &mcp.Tool{Name: "move_file", Title: "Move file", Annotations: destructive,
		Description: "Move or rename a file; the destination must not exist."}, sb.move)
	mcp.AddTool(s, &mcp.Tool{Name: "delete_file", Title: "Delete file", Annotations: destructive,
		Description: "Delete a file."}, sb.remove)
	return s, nil
}

// resolve maps a path from a call to one inside the sandbox, or refuses
// it. Symlinks are resolved, so a link cannot lead out.
func (sb *sandbox) resolve(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q is not an absolute path", path)
	}
	clean := filepath.Clean(path)
	real, err := filepath.EvalSymlinks(clean)
	if errors.Is(err, fs.ErrNotExist) {
		// A file about to be written: its directory must exist inside.
		var dir string
		if dir, err = filepath.EvalSymlinks(filepath.Dir(clean)); err == nil {
			real = filepath.Join(dir, filepath.Base(clean))
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if real != sb.root && !strings.HasPrefix(real, sb.root+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is outside the sandbox %s", path, sb.root)
	}
	return real, nil
}

func textResult(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

func (sb *sandbox) list(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
	p, err := sb.resolve(in.Path)
	if err != nil {
		return nil, nil, err
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, nil, err
	}
	var lines []string
	for _, e := range entries {
		kind := "[FILE]"
		if e.IsDir() {
			kind = "[DIR]"
		}
		lines = append(lines, kind+" "+e.Name())
	}
	return textResult("%s", strings.Join(lines, "\n")), nil, nil
}

func (sb *sandbox) read(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
	p, err := sb.resolve(in.Path)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, err
	}
	return textResult("%s", data), nil, nil
}

func (sb *sandbox) info(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
	p, err := sb.resolve(in.Path)
	if err != nil {
		return nil, nil, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	return textResult("size: %d\nmode: %s\nmodified: %s", st.Size(), st.Mode(), st.ModTime().UTC().Format("2006-01-02T15:04:05Z")), nil, nil
}

func (sb *sandbox) write(_ context.Context, _ *mcp.CallToolRequest, in writeArgs) (*mcp.CallToolResult, any, error) {
	p, err := sb.resolve(in.Path)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(p, []byte(in.Content), 0o644); err != nil {
		return nil, nil, err
	}
	return textResult("wrote %d bytes to %s", len(in.Content), in.Path), nil, nil
}

func (sb *sandbox) move(_ context.Context, _ *mcp.CallToolRequest, in moveArgs) (*mcp.CallToolResult, any, error) {
	src, err := sb.resolve(in.Source)
	if err != nil {
		return nil, nil, err
	}
	dst, err := sb.resolve(in.Destination)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return nil, nil, fmt.Errorf("%s already exists", in.Destination)
	}
	if err := os.Rename(src, dst); err != nil {
		return nil, nil, err
	}
	return textResult("moved %s to %s", in.Source, in.Destination), nil, nil
}

func (sb *sandbox) remove(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
	p, err := sb.resolve(in.Path)
	if err != nil {
		return nil, nil, err
	}
	if p == sb.root {
		return nil, nil, errors.New("the sandbox itself cannot be deleted")
	}
	if err := os.Remove(p); err != nil {
		return nil, nil, err
	}
	return textResult("deleted %s", in.Path), nil, nil
}
