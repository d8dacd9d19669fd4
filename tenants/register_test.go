package tenants

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
)

// Linking this package registers Doctor as serve's hardening gate: the gate then tries to reach the
// server (and says so) instead of failing closed for want of checks.
func TestLinkingTenantsRegistersDoctorAsServesHardeningGate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	cfg, err := config.Parse("[backend]\nhost = \"127.0.0.1\"\nport = " + strconv.Itoa(port) + "\nconnect_timeout = \"2s\"\n[auth]\nmethod = \"trust\"\n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = catalog.CheckHardening(ctx, cfg)
	if err == nil || errors.Is(err, catalog.ErrNoHardeningCheck) {
		t.Fatalf("CheckHardening = %v, want Doctor's connection error", err)
	}
	if !strings.Contains(err.Error(), "connect to PostgreSQL") {
		t.Errorf("CheckHardening = %v, want Doctor's connection error", err)
	}
}
