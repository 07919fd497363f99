package vfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func writeAll(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := io.WriteString(f, s); err != nil {
		t.Fatal(err)
	}
}

func TestMemCrashKeepsOnlySynced(t *testing.T) {
	m := NewMem()
	_ = m.MkdirAll("/d")
	f, err := WriteNew(m, "/d/a", true, func(w io.Writer) error {
		_, err := io.WriteString(w, "synced")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, f, "+unsynced")
	g, _ := m.Create("/d/b") // never synced, nor its directory
	writeAll(t, g, "lost")

	c := m.Crash(nil)
	if got, _ := c.ReadFile("/d/a"); string(got) != "synced" {
		t.Fatalf("after a crash /d/a holds %q, want %q", got, "synced")
	}
	if _, err := c.ReadFile("/d/b"); err == nil {
		t.Fatal("a file whose creation was never synced survived")
	}
	if names, _ := c.List("/d"); len(names) != 1 {
		t.Fatalf("directory after crash: %v", names)
	}
}

func TestMemCrashTearsUnsyncedTail(t *testing.T) {
	m := NewMem()
	_ = m.MkdirAll("/d")
	f, _ := m.Create("/d/a")
	_ = f.Sync()
	_ = m.SyncDir("/d")
	writeAll(t, f, "head")
	_ = f.Sync()
	writeAll(t, f, "0123456789")
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 200 {
		got, err := m.Crash(rng).ReadFile("/d/a")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte("head")) || len(got) > len("head0123456789") {
			t.Fatalf("crash image %q", got)
		}
		rest := got[4:]
		k := 0
		for k < len(rest) && rest[k] == "0123456789"[k] {
			k++
		}
		if len(bytes.Trim(rest[k:], "\x00")) != 0 {
			t.Fatalf("crash image %q is not a prefix followed by zeros", got)
		}
		seen[string(got)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d different crash images", len(seen))
	}
}

func TestMemRenameNeedsSyncDir(t *testing.T) {
	m := NewMem()
	_ = m.MkdirAll("/d")
	f, _ := m.Create("/d/x.tmp")
	writeAll(t, f, "data")
	_ = f.Sync()
	_ = m.Rename("/d/x.tmp", "/d/x")
	if _, err := m.Crash(nil).ReadFile("/d/x"); err == nil {
		t.Fatal("an unsynced rename survived a crash")
	}
	_ = m.SyncDir("/d")
	if got, _ := m.Crash(nil).ReadFile("/d/x"); string(got) != "data" {
		t.Fatalf("after SyncDir: %q", got)
	}
}

func TestMemFailHook(t *testing.T) {
	m := NewMem()
	_ = m.MkdirAll("/d")
	f, _ := m.Create("/d/a")
	boom := errors.New("boom")
	m.SetFail(func(op Op, name string) error {
		if op == OpWrite {
			return boom
		}
		return nil
	})
	if n, err := f.Write([]byte("abcd")); n != 2 || !errors.Is(err, boom) {
		t.Fatalf("failing write: n=%d err=%v, want a short write of 2", n, err)
	}
	if got, _ := m.ReadFile("/d/a"); string(got) != "ab" {
		t.Fatalf("after a failed write the file holds %q", got)
	}
}

func TestLock(t *testing.T) {
	for name, fs := range map[string]FS{"mem": NewMem(), "os": OS{}} {
		dir := t.TempDir()
		_ = fs.MkdirAll(dir)
		path := filepath.Join(dir, "LOCK")
		l, err := fs.Lock(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := fs.Lock(path); !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: second Lock: got %v, want ErrLocked", name, err)
		}
		_ = l.Close()
		l, err = fs.Lock(path)
		if err != nil {
			t.Fatalf("%s: Lock after release: %v", name, err)
		}
		_ = l.Close()
	}
}

func TestOSWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, err := WriteNew(OS{}, path, true, func(w io.Writer) error {
		_, err := io.WriteString(w, "hello")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, f, " world")
	_ = f.Close()
	r, _ := OS{}.Open(path)
	defer r.Close()
	got, _ := io.ReadAll(r)
	names, _ := OS{}.List(dir)
	if string(got) != "hello world" || len(names) != 1 {
		t.Fatalf("file holds %q, directory %v", got, names)
	}
}

func TestOSMkdirAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	for range 2 { // creating, then finding it there
		if err := (OS{}).MkdirAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := (OS{}).List(filepath.Dir(dir)); err != nil || len(names) != 1 || names[0] != "b" {
		t.Fatalf("parent lists %v, %v", names, err)
	}
	file := filepath.Join(dir, "f")
	f, err := OS{}.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if err := (OS{}).MkdirAll(filepath.Join(file, "c")); err == nil {
		t.Fatal("MkdirAll under a regular file succeeded")
	}
}
