//! The command line: `lti-tool [serve]`, `lti-tool consumer ...` and `lti-tool admin ...`, on the
//! server's configuration.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::consumer_input;
use crate::store::{self, consumers, usage, Db};

mod admin;
mod serve;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "lti-tool",
    version,
    about = "Reference LTI 1.1 tool provider",
    after_help = "The commands read the server's configuration (Rocket.toml in the working folder \
                  or one above it, ROCKET_* variables): run them with the server's ROCKET_PROFILE, ROCKET_SECRET_KEY \
                  and ROCKET_DATABASE_URL, or they work on another database or refuse to run."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server (the default).
    Serve,
    /// Manage consumer keys (one per LMS or course).
    Consumer {
        #[command(subcommand)]
        action: ConsumerAction,
    },
    /// Manage the web admin at /admin.
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
}

#[derive(Debug, Subcommand)]
enum ConsumerAction {
    /// Add a consumer; prints its secret once.
    Add {
        /// Consumer key: 1 to 255 letters, digits and . _ : -
        key: String,
        /// Use this secret instead of generating one; `-` reads it from the first line of
        /// standard input (a secret in the arguments shows in `ps` and the shell's history). One
        /// that starts with `-` is given as `--secret=-…`.
        // Not `allow_hyphen_values`: an empty `--secret $VAR` would take the next option for
        // the secret.
        #[arg(long)]
        secret: Option<String>,
        /// A human name (defaults to the key).
        #[arg(long)]
        name: Option<String>,
    },
    /// List consumers (secrets are never shown).
    List,
    /// Refuse launches signed with this key.
    Disable { key: String },
    /// Accept launches signed with this key again.
    Enable { key: String },
    /// Delete a consumer, end its sessions and forget its grade records and refused launches
    /// (and a fork's rows of it).
    // `delete` too: the admin page's button says Delete.
    #[command(visible_alias = "delete")]
    Remove { key: String },
    /// Replace a consumer's secret with a new one; prints it once.
    Rotate { key: String },
}

/// Runs the command; the server when none is given.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        None | Some(Command::Serve) => {
            // Tried before anything else, so that a second server started by mistake changes
            // nothing in the running one's database (migrations, the demo consumer, the key
            // check) before it fails to listen. Rocket binds again below.
            if let Some(at) = serve::listen_address() {
                if let Err(why) = std::net::TcpListener::bind(at) {
                    eprintln!("{}", serve::cannot_listen(Some(at), &why));
                    return ExitCode::FAILURE;
                }
            }
            serve::serve().await
        }
        Some(Command::Consumer { action }) => finish(consumer(action).await),
        Some(Command::Admin { action }) => finish(admin::run(action).await),
    }
}

/// A command's exit: its error, if any, on stderr.
fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lti-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The secret of `--secret -`: asked for without echo on a terminal, else standard input's
/// first line.
fn read_secret() -> Result<String, String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return rpassword::prompt_password("Secret: ")
            .map_err(|e| format!("cannot read the secret: {e}"));
    }
    first_line_of_stdin()
}

/// The first line of standard input, without its line ending.
fn first_line_of_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The settings and the secret cipher, as the server would read them: a command that asks for
/// input checks them first, so a missing `secret_key` is said before anything is typed.
pub(crate) fn settings_and_cipher() -> Result<(Settings, crate::crypto::SecretCipher), String> {
    let figment = crate::figment();
    let settings = Settings::from_figment(&figment)?;
    let cipher = crate::crypto::SecretCipher::from_figment(&figment)?;
    Ok((settings, cipher))
}

/// Opens the server's database with its secret cipher, as the server would. Any command creates
/// a missing database (as the server does) and says where on stderr: run without the server's
/// environment, it would otherwise show or change another database without a word.
async fn open_db() -> Result<Db, String> {
    // Refuses a missing key before a database file is created for nothing.
    let (settings, cipher) = settings_and_cipher()?;
    // As the server does: `ROCKET_DATABSE_URL` would otherwise mean another database.
    let figment = crate::figment();
    for key in crate::config::unknown_settings(&figment) {
        eprintln!("lti-tool: warning: unknown setting `{key}` is ignored (misspelt?)");
    }
    if let Some(warning) = crate::config::settings_file_warning(&figment) {
        eprintln!("lti-tool: warning: {warning}");
    }
    let store::Opened {
        db,
        created,
        upgraded,
    } = store::open_telling(&settings.database_url)
        .await
        .map_err(|e| e.to_string())?;
    for migration in upgraded {
        eprintln!("lti-tool: upgraded the database: migration {migration}");
    }
    if created {
        if let Ok(Some(file)) = store::file_of(&settings.database_url) {
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            // Made by root, it is root's alone (mode 0600): a server running as its own user
            // could not open it.
            let owner = if is_root() {
                "; it belongs to root, so a server running as another user cannot open it \
                 until it and its folder are given to that user (chown)"
            } else {
                ""
            };
            eprintln!(
                "lti-tool: created a new database at {} (the server must use this one: run the \
                 command line with the server's environment){owner}",
                file.display()
            );
        }
    }
    if let Err(e) = crate::crypto::install_cipher(&db, cipher).await {
        store::close(&db).await;
        return Err(e);
    }
    Ok(db)
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where a secret the command line writes goes: a transaction holding the write lock, in which
/// the database's `secret_key` check passed, and the cipher to seal the secret with. Commit it
/// after the write.
struct SecretWrite {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    cipher: std::sync::Arc<crate::crypto::SecretCipher>,
}

/// Refuses to write a secret under a `secret_key` that the database's other secrets were not
/// written with: run without the server's environment, the command line would add a consumer the
/// server cannot read (its launches fail, and the server refuses to start).
async fn begin_secret_write(db: &Db) -> Result<SecretWrite, String> {
    const USE_THE_SERVERS_KEY: &str = "run the command line with the server's environment \
        (ROCKET_SECRET_KEY, ROCKET_PROFILE, Rocket.toml), or see `lti-tool admin rekey` if the \
        server's key changed";
    let other_key = || {
        format!(
            "this secret_key is not the one the server last started with on this database (or, \
             before its first start, the one the command line first wrote a secret under); \
             {USE_THE_SERVERS_KEY}"
        )
    };
    let unreadable = |keys: &[String]| {
        format!(
            "this secret_key is not the one the database's secrets were written with ({} \
             consumer(s) do not decrypt: {}); {USE_THE_SERVERS_KEY}",
            keys.len(),
            keys.join(", ")
        )
    };
    // The server seals a check under its key at start (or the first command line run that
    // writes a secret does, before any server started): this catches a new installation too,
    // whose database has no secret to compare yet.
    if consumers::key_check(db).await.map_err(|e| e.to_string())? == Some(false) {
        return Err(other_key());
    }
    // Adopts an older debug build's secrets, if that is what does not decrypt.
    let keys = crate::startup::unreadable_secrets(db, &crate::figment()).await?;
    if !keys.is_empty() {
        return Err(unreadable(&keys));
    }
    // Checked again under the write lock, held until the secret is committed: a server starting
    // under another key meanwhile cannot pass its check between this one and the write.
    let (tx, check) = consumers::begin_under_key_check(db, false)
        .await
        .map_err(|e| e.to_string())?;
    match check {
        consumers::KeyCheck::Sealed => Ok(SecretWrite {
            tx,
            cipher: crate::crypto::cipher_for(db).map_err(|e| e.to_string())?,
        }),
        consumers::KeyCheck::OtherKey => Err(other_key()),
        consumers::KeyCheck::Unreadable(keys) => Err(unreadable(&keys)),
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if consumer_input::is_valid_key(key) {
        Ok(())
    } else {
        Err(format!(
            "invalid key {key:?}: use 1 to 255 characters of A-Z a-z 0-9 . _ : -"
        ))
    }
}

fn found(done: bool, key: &str) -> Result<(), String> {
    if done {
        Ok(())
    } else {
        Err(format!("no consumer with key {key:?}"))
    }
}

/// A consumer to add, its input checked (and its secret read) before a database is opened.
struct NewConsumer {
    key: String,
    secret: String,
    /// Whether the secret was generated (then it is printed).
    generated: bool,
    name: String,
}

fn checked_new_consumer(
    key: String,
    secret: Option<String>,
    name: Option<String>,
) -> Result<NewConsumer, String> {
    check_key(&key)?;
    let generated = secret.is_none();
    let secret = match secret.as_deref() {
        Some("-") => Some(read_secret()?),
        _ => secret,
    };
    let secret =
        match secret {
            Some(s) if s.is_empty() => return Err("--secret must not be empty".into()),
            // LMS settings forms trim what is pasted into them: the signatures would differ.
            Some(s) if s.trim() != s => {
                return Err("--secret must not start or end with spaces or other blanks".into())
            }
            // A settings form's text field drops line breaks; the signatures would differ.
            Some(s) if s.chars().any(char::is_control) => return Err(
                "--secret must not hold line breaks, tabs or other control characters: an LMS's \
                 settings form cannot hold them"
                    .into(),
            ),
            Some(s) => s,
            None => consumer_input::generate_secret(),
        };
    let length = secret.chars().count();
    // The published demo pair is short on purpose, and told apart by the caller (refused, or
    // seeded on purpose in the debug profile).
    let demo = (key.as_str(), secret.as_str()) == crate::DEMO_CONSUMER;
    if !generated && length < 16 && !demo {
        eprintln!("warning: a secret of {length} characters is easy to guess; prefer 16 or more");
    }
    if length > 100 {
        eprintln!(
            "warning: Brightspace keeps only the first 100 characters of a secret; its launches \
             would not verify"
        );
    }
    if let Some(note) = consumer_input::passport_note(&key, &secret) {
        eprintln!("warning: {note}");
    }
    // Like the admin page: no name (or a blank one) is the key, which may be longer than a name
    // given.
    let name = match name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => {
            if let Some(problem) = consumer_input::name_problem(n) {
                return Err(format!("--name {problem}"));
            }
            n.to_string()
        }
        _ => key.clone(),
    };
    Ok(NewConsumer {
        key,
        secret,
        generated,
        name,
    })
}

async fn consumer(action: ConsumerAction) -> Result<(), String> {
    match action {
        ConsumerAction::Add { key, secret, name } => {
            // Bad settings, then bad input, are refused before a database is opened, let
            // alone created.
            let (settings, _) = settings_and_cipher()?;
            let new = checked_new_consumer(key, secret, name)?;
            if !settings.seed_demo_consumer
                && (new.key.as_str(), new.secret.as_str()) == crate::DEMO_CONSUMER
            {
                return Err(consumers::PUBLISHED_DEMO_NOT_ADDED.into());
            }
            with_db(async |db| add_consumer(db, new).await).await
        }
        ConsumerAction::List => with_db(list_consumers).await,
        ConsumerAction::Disable { key } => {
            with_db(async |db| set_enabled(db, &key, false).await).await
        }
        ConsumerAction::Enable { key } => {
            let (settings, _) = settings_and_cipher()?;
            with_db(async |db| {
                if !settings.seed_demo_consumer
                    && consumers::is_published_demo(db, &key).await.map_err(err)?
                {
                    return Err(consumers::PUBLISHED_DEMO_REFUSED.into());
                }
                set_enabled(db, &key, true).await
            })
            .await
        }
        ConsumerAction::Remove { key } => {
            with_db(async |db| {
                found(consumers::delete(db, &key).await.map_err(err)?, &key)?;
                say(&format!("removed {key:?}, ended its sessions and forgot its grade records and refused launches"));
                Ok(())
            })
            .await
        }
        ConsumerAction::Rotate { key } => with_db(async |db| rotate_secret(db, &key).await).await,
    }
}

/// Runs `f` on the database opened as the server would, then closes it, on errors too (as the
/// server does at a stop: the database file alone is then complete).
pub(crate) async fn with_db<T>(f: impl AsyncFnOnce(&Db) -> Result<T, String>) -> Result<T, String> {
    let db = open_db().await?;
    let result = f(&db).await;
    // The running server reads the database too, so its WAL staying is the usual case here.
    if let Some(note @ store::CloseNote::CheckpointFailed(_)) = store::close(&db).await {
        eprintln!("lti-tool: {note}");
    }
    result
}

/// Prints a line on standard output; one that cannot be written (a closed pipe) is dropped, as
/// the change it reports is made already.
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints what must be seen before a change counts (a new secret), before it commits: if it
/// cannot be written (a closed pipe, a full disk), the command fails with nothing changed
/// instead of saving a secret nobody saw.
fn show_before_commit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    if prints_nowhere() {
        return Err(
            "standard output goes to /dev/null (or was closed), so the new secret would be \
             seen by nobody; nothing was changed"
                .into(),
        );
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("could not print the new secret ({e}); nothing was changed"))
}

/// Whether standard output is `/dev/null`: redirected there, or closed (`>&-`), which Rust's
/// runtime turns into `/dev/null` at start. (Read through Linux's `/proc`; elsewhere, false.)
fn prints_nowhere() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let device = |path| {
            std::fs::metadata(path)
                .ok()
                .filter(|m| m.file_type().is_char_device())
                .map(|m| m.rdev())
        };
        matches!(
            (device("/proc/self/fd/1"), device("/dev/null")),
            (Some(out), Some(null)) if out == null
        )
    }
    #[cfg(not(unix))]
    false
}

/// The error of a commit after the secret was printed.
fn not_saved(printed: bool) -> impl Fn(sqlx::Error) -> String {
    move |e| match printed {
        true => format!("{e}; what was printed above was not saved, and nothing was changed"),
        false => e.to_string(),
    }
}

fn err(e: crate::error::LtiError) -> String {
    e.to_string()
}

async fn add_consumer(db: &Db, new: NewConsumer) -> Result<(), String> {
    let NewConsumer {
        key,
        secret,
        generated,
        name,
    } = new;
    let mut write = begin_secret_write(db).await?;
    let now = store::now();
    let cipher = &write.cipher;
    if !consumers::create_on(&mut *write.tx, cipher, &key, &secret, &name, "", now)
        .await
        .map_err(err)?
    {
        return Err(format!("a consumer with key {key:?} already exists"));
    }
    let mut shown = format!("added consumer {key:?}\n");
    if generated {
        shown.push_str(&format!(
            "secret: {secret}\n(shown once: copy it into the LMS now)\n"
        ));
        show_before_commit(&shown)?;
    }
    write.tx.commit().await.map_err(not_saved(generated))?;
    if !generated {
        say(shown.trim_end());
    }
    // Added already: a failure here must not read as if it were not.
    let alike = consumers::keys_differing_in_case(db, &key)
        .await
        .unwrap_or_else(|e| {
            eprintln!("warning: could not compare the key with the others: {e}");
            Vec::new()
        });
    for other in alike {
        eprintln!(
            "warning: keys are case-sensitive, and {other:?} differs from {key:?} only in \
             case; if that was not meant, remove one of them"
        );
    }
    Ok(())
}

async fn list_consumers(db: &Db) -> Result<(), String> {
    // The figures, not the consumers: listing decrypts no secret.
    let all = usage::overview(db, store::now()).await.map_err(err)?;
    if all.is_empty() {
        // Not on standard output, where a script would read it as a key.
        eprintln!("no consumers");
    }
    // Written, not `println!`: piped into `head`, a closed pipe ends the listing quietly
    // instead of panicking; any other failure (a full disk) is the command's.
    let stopped = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(format!("could not print the list: {e}")),
    };
    let mut out = std::io::stdout().lock();
    for c in all {
        let created = chrono::DateTime::from_timestamp(c.created_at, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let state = if c.enabled { "enabled" } else { "disabled" };
        // Rows from before names were checked may hold control characters: escaped.
        let name = consumer_input::escape_hidden(&c.name, false);
        if let Err(e) = writeln!(out, "{}\t{state}\t{created}\t{name}", c.key) {
            return stopped(e);
        }
    }
    out.flush().or_else(stopped)
}

async fn set_enabled(db: &Db, key: &str, enabled: bool) -> Result<(), String> {
    found(
        consumers::set_enabled(db, key, enabled)
            .await
            .map_err(err)?,
        key,
    )?;
    say(&format!(
        "{} {key:?}",
        if enabled { "enabled" } else { "disabled" }
    ));
    Ok(())
}

async fn rotate_secret(db: &Db, key: &str) -> Result<(), String> {
    let mut write = begin_secret_write(db).await?;
    let secret = consumer_input::generate_secret();
    found(
        consumers::set_secret_on(&mut *write.tx, &write.cipher, key, &secret)
            .await
            .map_err(err)?,
        key,
    )?;
    show_before_commit(&format!(
        "new secret for {key:?}: {secret}\n(shown once: the old secret no longer works)\n"
    ))?;
    write.tx.commit().await.map_err(not_saved(true))?;
    Ok(())
}
