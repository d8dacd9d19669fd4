package config

import (
	"strings"
	"testing"
	"time"
)

func TestMigrationsKeysDefaultAndParse(t *testing.T) {
	c, err := Parse(minimal)
	if err != nil {
		t.Fatal(err)
	}
	if c.Migrations.LockTimeout.Duration != 3*time.Second || c.Migrations.StatementTimeout.Duration != 10*time.Minute || *c.Migrations.Retries != 5 {
		t.Fatalf("defaults: %+v retries %d", c.Migrations, *c.Migrations.Retries)
	}
	c, err = Parse(minimal + "\n[migrations]\nlock_timeout = \"750ms\"\nstatement_timeout = \"1m\"\nretries = 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Migrations.LockTimeout.Duration != 750*time.Millisecond || c.Migrations.StatementTimeout.Duration != time.Minute || *c.Migrations.Retries != 0 {
		t.Fatalf("parsed: %+v retries %d", c.Migrations, *c.Migrations.Retries)
	}
	c, err = Parse(strings.Replace(minimal, `name = "acme"`, "name = \"acme\"\nmigration_group = \"canary\"", 1))
	if err != nil || c.Tenants[0].MigrationGroup != "canary" {
		t.Fatalf("migration_group: %v %+v", err, c.Tenants)
	}
}

func TestMigrationsKeysRejectBadValues(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"lock_timeout = \"-1s\"", "[migrations] lock_timeout"},
		{"statement_timeout = \"-5s\"", "[migrations] statement_timeout"},
		{"retries = -1", "[migrations] retries"},
	} {
		if _, err := Parse(minimal + "\n[migrations]\n" + c.text + "\n"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.text, err, c.want)
		}
	}
}
