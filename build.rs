//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files at compile
//! time, and without this a new file alone leaves the old set in the binary.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
