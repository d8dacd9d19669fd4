-- AgenticHR: departments, and the link from employees to them.
CREATE TABLE departments (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE employees
    ADD CONSTRAINT employees_department_id_fkey
    FOREIGN KEY (department_id) REFERENCES departments (id) ON DELETE SET NULL;

CREATE INDEX employees_department_id_idx ON employees (department_id);
