package app

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestReusePortLetsTwoListenersShareAnAddress(t *testing.T) {
	a, err := listen("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := listen(a.Addr().String(), true)
	if err != nil {
		t.Fatalf("a second reuse_port listener on %s: %v", a.Addr(), err)
	}
	b.Close()
	if c, err := listen(a.Addr().String(), false); err == nil {
		c.Close()
		t.Fatal("a listener without reuse_port took an address in use")
	}
}

func TestNotifySystemdSendsTheStateToNOTIFY_SOCKET(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	notifySystemd("READY=1", zap.NewNop())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("got %q, %v", b[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	notifySystemd("STOPPING=1", zap.NewNop()) // logged, not fatal
}

func TestForwardCancelWritesACancelRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 16)
		io.ReadFull(c, b)
		got <- b
	}()
	if err := forwardCancel(ln.Addr().String(), 2<<24|77, 0xdeadbeef); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if binary.BigEndian.Uint32(b[0:]) != 16 || binary.BigEndian.Uint32(b[4:]) != cancelCode ||
			binary.BigEndian.Uint32(b[8:]) != 2<<24|77 || binary.BigEndian.Uint32(b[12:]) != 0xdeadbeef {
			t.Errorf("cancel request bytes % x", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived")
	}
}
