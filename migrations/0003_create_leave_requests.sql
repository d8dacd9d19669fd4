-- AgenticHR: leave requests of employees.
CREATE TABLE leave_requests (
    id          serial PRIMARY KEY,
    employee_id int NOT NULL REFERENCES employees (id) ON DELETE CASCADE,
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    kind        text NOT NULL DEFAULT 'vacation' CHECK (kind IN ('vacation', 'sick', 'parental', 'unpaid')),
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled')),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);

CREATE INDEX leave_requests_employee_id_idx ON leave_requests (employee_id);
