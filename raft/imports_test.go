package raft

import (
	"go/build"
	"strings"
	"testing"
)

// TestPureImports keeps the core deterministic: no package that reaches the
// network, the file system, the clock or threads may be imported.
func TestPureImports(t *testing.T) {
	forbidden := map[string]bool{"net": true, "os": true, "time": true, "sync": true}
	for _, dir := range []string{".", "./quorum", "./confchange"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("read package %s: %v", dir, err)
		}
		for _, imp := range pkg.Imports {
			root, _, _ := strings.Cut(imp, "/")
			if forbidden[root] {
				t.Errorf("package %s imports %q", pkg.ImportPath, imp)
			}
		}
	}
}
