//! One integration test binary (one link on small machines); each module is one area.

mod helpers;

mod hostile;
mod housekeeping;
mod launch;
mod pages;
mod reliability;
mod vectors;
