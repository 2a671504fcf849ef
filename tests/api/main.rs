//! One integration test binary (one link on small machines); each module is one area.

mod helpers;

mod cli;
mod diagnosis;
mod fork;
mod launch;
mod lms;
mod outcomes;
mod pages;
mod vectors;
