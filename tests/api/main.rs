//! One integration test binary (one link on small machines); each module is one area.

mod helpers;

mod admin;
mod admin_browser;
mod cli;
mod diagnosis;
mod fork;
mod launch;
mod lms;
mod outcomes;
mod pages;
mod vectors;
