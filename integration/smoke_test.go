package integration

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

func TestSmokeEachTenantSeesOnlyItsRows(t *testing.T) {
	f := proxytest.NewFixture(t)
	p := f.Start(t, nil)
	ctx := context.Background()
	for _, tenant := range f.Tenants {
		conn, err := pgx.Connect(ctx, p.TenantURL(tenant))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var who string
		if err := conn.QueryRow(ctx, "select count(*), min(tenant) from employees").Scan(&n, &who); err != nil {
			t.Fatal(err)
		}
		if n != proxytest.RowsPerTenant || who != tenant {
			t.Fatalf("%s sees %d rows of %s", tenant, n, who)
		}
		conn.Close(ctx)
	}
}
