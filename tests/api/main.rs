//! One integration test binary (one link on small machines); each module is one area.

mod helpers;

mod admin;
mod admin_browser;
mod cli;
mod diagnosis;
mod fork;
mod hostile;
mod housekeeping;
mod launch;
mod lms;
mod outcomes;
mod pages;
mod reliability;
mod vectors;
