//! One integration test binary (one link on small machines); each module is one area.

mod helpers;

mod launch;
mod outcomes;
mod pages;
mod vectors;
