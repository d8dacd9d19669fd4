-- AgenticHR: the people of one tenant. Runs as the owner role with search_path set to the tenant's
-- schema, so names stay unqualified and every object lands in that schema.
CREATE TABLE employees (
    id            serial PRIMARY KEY,
    name          text NOT NULL,
    email         text NOT NULL UNIQUE,
    department_id int,
    created_at    timestamptz NOT NULL DEFAULT now()
);
