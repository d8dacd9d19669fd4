-- The test tenants' table: the tenant column defaults to the tenant setting the proxy injects, so a row
-- written through the proxy is marked with the writer's tenant.
CREATE TABLE employees (
    id     serial PRIMARY KEY,
    name   text NOT NULL,
    email  text,
    tenant text NOT NULL DEFAULT current_setting('tenantproxy.tenant')
);
