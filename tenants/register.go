package tenants

import (
	"context"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/catalog"
	"github.com/tenantproxy/tenantproxy/config"
)

// serve's hardening gate (catalog.CheckHardening) runs Doctor, and serve's catalog users
// (catalog.NewUserSource) are CatalogUsers, so serve need not import this package.
func init() {
	catalog.RegisterHardening(func(ctx context.Context, cfg *config.Config) ([]catalog.Failure, error) {
		rep, err := Doctor(ctx, cfg)
		if err != nil {
			return nil, err
		}
		var out []catalog.Failure
		for _, c := range rep.Failed() {
			out = append(out, catalog.Failure{Name: c.Name, Detail: c.Detail})
		}
		return out, nil
	})
	catalog.RegisterUserSource(func(ctx context.Context, cfg *config.Config, log *zap.Logger) catalog.UserSource {
		return NewCatalogUsers(ctx, cfg, log)
	})
	catalog.RegisterMigrationVersions(func(ctx context.Context, cfg *config.Config) (map[string]string, error) {
		conn, err := connectAdmin(ctx, cfg, "")
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.Background())
		vs, err := TenantMigrationVersions(ctx, conn)
		if err != nil {
			return nil, err
		}
		out := make(map[string]string, len(vs))
		for t, v := range vs {
			out[t] = v.String()
		}
		return out, nil
	})
}
