package tenants

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// The progress bar draws only on a terminal; /dev/null is a character device but not a terminal, and a
// bar written there (or to a pipe or a file) is noise in a log.
func TestIsTerminalTellsATerminalFromOtherWriters(t *testing.T) {
	open := func(name string) io.Writer {
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	cases := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"/dev/null", open(os.DevNull), false},
		{"pipe", w, false},
		{"regular file", open(writeTemp(t)), false},
		{"buffer", &bytes.Buffer{}, false},
		{"pseudo-terminal", open("/dev/ptmx"), true},
	}
	for _, c := range cases {
		if got := isTerminal(c.w); got != c.want {
			t.Errorf("isTerminal(%s) = %v, want %v", c.name, got, c.want)
		}
	}
}

func writeTemp(t *testing.T) string {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}
