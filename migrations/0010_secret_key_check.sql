-- At most one row: a fixed text sealed under the key the server last started with, so that a
-- command line run under another secret_key is refused even before any consumer exists (it would
-- write secrets the server cannot read). Never edit once shipped: add a new file.
CREATE TABLE secret_key_check (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed TEXT NOT NULL
);
