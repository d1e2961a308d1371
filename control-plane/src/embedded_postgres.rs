//! The embedded default PostgreSQL: a private cluster made from the machine's own server
//! binaries inside the data dir, on a loopback port, with scram-sha-256 authentication.
//!
//! Invariant: clusters Silo starts itself never use `trust`, so tenant credentials mean
//! something even on a laptop. Invariant: the superuser password is stored only in a 0600 file
//! in the data dir and held in memory as a `SecretString`.
//! When run as root, the server runs as the `postgres` OS user (PostgreSQL refuses root).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::{ExposeSecret as _, SecretString};

const SUPERUSER: &str = "postgres";

/// What went wrong with the embedded cluster, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
         Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@15`), set \
         SILO_POSTGRES_BIN_DIR to their folder, or set SILO_DATABASE_URL to use a server you run"
    )]
    BinariesNotFound,
    #[error(
        "the PostgreSQL client tool `{0}` was not found beside the server binaries or on PATH; \
         install PostgreSQL's client programs (Debian/Ubuntu: `apt-get install postgresql-client`)"
    )]
    ToolNotFound(String),
    #[error(
        "the PostgreSQL server runs as the `postgres` OS user, which cannot reach {0}; choose a \
         --data-dir it can reach (for example under /tmp or /var/lib/silo)"
    )]
    Unreachable(PathBuf),
    #[error(
        "running as root, but there is no `postgres` OS user to run the server as; create one (`useradd --system postgres`) or run Silo as an ordinary user"
    )]
    NoPostgresUser,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

/// How the cluster is tuned.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// Trade durability for speed (fsync off): for test clusters only.
    pub ephemeral: bool,
    pub max_connections: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            ephemeral: false,
            max_connections: 200,
        }
    }
}

/// A running cluster Silo made. Stop it with [`EmbeddedPostgres::stop`] if
/// [`EmbeddedPostgres::started_here`] says this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
    password: SecretString,
    run_as: Option<OsUser>,
    started_here: bool,
}

#[derive(Debug, Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Starts (initialising on first use) the cluster under `data_dir`, or attaches to it if it
    /// is already running (for example, `silo keys rotate` beside `silo dev`). Blocking.
    pub fn start(data_dir: &Path, options: ClusterOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_server_binaries()?;
        fs::create_dir_all(data_dir)
            .map_err(io_error(format!("cannot create {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_error(format!("cannot resolve {}", data_dir.display())))?;
        // One process at a time initialises or starts the cluster; the others wait, then attach.
        let lock = File::create(data_dir.join("postgres.lock"))
            .map_err(io_error("cannot create the cluster lock file"))?;
        lock.lock()
            .map_err(io_error("cannot lock the cluster lock file"))?;

        let run_as = if running_as_root() {
            Some(postgres_os_user()?)
        } else {
            None
        };
        let pgdata = data_dir.join("postgres");
        let password_file = data_dir.join("postgres-superuser-password");
        if !pgdata.join("PG_VERSION").exists() {
            initialise(
                &bin_dir,
                &pgdata,
                &password_file,
                run_as,
                options,
                &data_dir,
            )?;
        }
        let password = SecretString::from(
            fs::read_to_string(&password_file)
                .map_err(io_error(
                    "cannot read the cluster's superuser password file",
                ))?
                .trim()
                .to_owned(),
        );
        let mut cluster = Self {
            bin_dir,
            pgdata,
            port: 0,
            password,
            run_as,
            started_here: false,
        };
        if !cluster.is_running()? {
            let log = cluster.pgdata.join("server.log");
            cluster
                .pg_ctl(&[
                    "-D",
                    path_str(&cluster.pgdata),
                    "-l",
                    path_str(&log),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ])
                .map_err(|error| match error {
                    EmbeddedError::Command { command, .. } => EmbeddedError::Command {
                        command,
                        detail: format!(
                            "the server did not start; its log is {} (is its port taken?)",
                            log.display()
                        ),
                    },
                    other => other,
                })?;
            cluster.started_here = true;
        }
        cluster.port = read_port(&cluster.pgdata)?;
        drop(lock);
        Ok(cluster)
    }

    /// Whether this process started the server (and so should stop it on exit).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL for `database` on this cluster.
    pub fn superuser_url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Stops the server (fast shutdown: open transactions roll back, nothing committed is lost).
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl(&["-D", path_str(&self.pgdata), "-m", "fast", "-w", "stop"])
            .map(|_| ())
    }

    /// Makes sure the server stops when this process ends, however it ends (return, panic,
    /// Ctrl-C, SIGKILL): a small watcher process, in a process group of its own, holds the read
    /// end of a pipe whose write end only this process holds; when the kernel closes it at
    /// exit, the watcher runs `pg_ctl stop`. Keep the returned handle alive as long as the
    /// cluster should run (the test harness leaks it into a static); dropping it stops the
    /// server too.
    pub fn stop_when_this_process_exits(&self) -> Result<std::process::ChildStdin, EmbeddedError> {
        use std::os::unix::process::CommandExt as _;
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("cat >/dev/null; exec \"$@\"")
            .arg("silo-cluster-watcher");
        if self.run_as.is_some() {
            command.args(["runuser", "-u", SUPERUSER, "--"]);
        }
        command
            .arg(&pg_ctl)
            .args(["-D", path_str(&self.pgdata), "-m", "fast", "-w", "stop"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .current_dir("/")
            // Not in our process group: a Ctrl-C meant for us must not stop the watcher first.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(io_error("cannot start the cluster's exit watcher"))?;
        child.stdin.take().ok_or_else(|| EmbeddedError::Io {
            context: "the cluster's exit watcher has no stdin".into(),
            source: std::io::Error::other("no pipe"),
        })
    }

    /// Kills the postmaster without a clean shutdown, as a crash would (for tests).
    pub fn kill(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl(&[
            "-D",
            path_str(&self.pgdata),
            "kill",
            "KILL",
            &postmaster_pid(&self.pgdata)?,
        ])
        .map(|_| ())
    }

    fn is_running(&self) -> Result<bool, EmbeddedError> {
        let output = self.command("pg_ctl", &["-D", path_str(&self.pgdata), "status"])?;
        Ok(output.status.success())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, EmbeddedError> {
        checked(self.command("pg_ctl", args)?, "pg_ctl", args)
    }

    fn command(&self, program: &str, args: &[&str]) -> Result<Output, EmbeddedError> {
        run(&self.bin_dir, self.run_as, program, args)
    }
}

fn initialise(
    bin_dir: &Path,
    pgdata: &Path,
    password_file: &Path,
    run_as: Option<OsUser>,
    options: ClusterOptions,
    data_dir: &Path,
) -> Result<(), EmbeddedError> {
    if pgdata.exists() {
        // A half-made cluster from an interrupted first run: start over.
        fs::remove_dir_all(pgdata).map_err(io_error("cannot clear a half-initialised cluster"))?;
    }
    fs::create_dir_all(pgdata).map_err(io_error("cannot create the cluster folder"))?;
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))
        .map_err(io_error("cannot restrict the cluster folder"))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(pgdata, Some(user.uid), Some(user.gid)).map_err(io_error(
            "cannot give the cluster folder to the postgres user",
        ))?;
        let probe = run(bin_dir, run_as, "test", &["-w", path_str(pgdata)]);
        if !matches!(probe, Ok(output) if output.status.success()) {
            return Err(EmbeddedError::Unreachable(data_dir.to_owned()));
        }
    }
    let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
    write_private(password_file, &password, None)?;
    // initdb reads the password from a file the server user can read; it lives for one command.
    let initdb_password = pgdata.with_extension("initdb-password");
    write_private(&initdb_password, &password, run_as)?;
    let mut args = vec![
        "-D",
        path_str(pgdata),
        "-U",
        SUPERUSER,
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
    ];
    let pwfile_arg = format!("--pwfile={}", initdb_password.display());
    args.push(&pwfile_arg);
    if options.ephemeral {
        args.push("--no-sync");
    }
    let result =
        run(bin_dir, run_as, "initdb", &args).and_then(|output| checked(output, "initdb", &args));
    let _ = fs::remove_file(&initdb_password);
    result?;

    let port = free_loopback_port()?;
    let mut conf = format!(
        "\n# Written by Silo for its embedded cluster.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = ''\n\
         password_encryption = 'scram-sha-256'\n\
         max_connections = {}\n\
         max_wal_size = '2GB'\n",
        options.max_connections
    );
    if options.ephemeral {
        conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
    }
    let mut file = OpenOptions::new()
        .append(true)
        .open(pgdata.join("postgresql.conf"))
        .map_err(io_error("cannot open postgresql.conf"))?;
    file.write_all(conf.as_bytes())
        .map_err(io_error("cannot write postgresql.conf"))?;
    Ok(())
}

fn write_private(path: &Path, contents: &str, owner: Option<OsUser>) -> Result<(), EmbeddedError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    if let Some(user) = owner {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_error(format!("cannot chown {}", path.display())))?;
    }
    Ok(())
}

/// The folder holding `initdb` and `pg_ctl`: `SILO_POSTGRES_BIN_DIR`, else PATH, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_server_binaries() -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("SILO_POSTGRES_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(EmbeddedError::BinariesNotFound)
        };
    }
    if let Some(dir) = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_both(dir)))
    {
        return Ok(dir);
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(EmbeddedError::BinariesNotFound)
}

/// A PostgreSQL client tool (`psql`, `pg_dump`, `pg_restore`) of the same installation as the
/// server binaries: beside the real `initdb` (symlinks followed), else on PATH.
pub fn find_tool(name: &str) -> Result<PathBuf, EmbeddedError> {
    let server = find_server_binaries()?;
    let beside_real = fs::canonicalize(server.join("initdb"))
        .ok()
        .and_then(|initdb| initdb.parent().map(|dir| dir.join(name)));
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|tool| tool.is_file())
    });
    beside_real
        .into_iter()
        .chain(std::iter::once(server.join(name)))
        .chain(on_path)
        .find(|tool| tool.is_file())
        .ok_or_else(|| EmbeddedError::ToolNotFound(name.to_owned()))
}

fn run(
    bin_dir: &Path,
    run_as: Option<OsUser>,
    program: &str,
    args: &[&str],
) -> Result<Output, EmbeddedError> {
    let executable = if program == "test" {
        PathBuf::from("test")
    } else {
        bin_dir.join(program)
    };
    let mut command = match run_as {
        Some(_) => {
            let mut command = Command::new("runuser");
            command.args(["-u", SUPERUSER, "--"]).arg(&executable);
            command
        }
        None => Command::new(&executable),
    };
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        // pg_ctl's server inherits no pipe of ours, so nothing waits on it after we exit.
        .current_dir("/");
    command
        .output()
        .map_err(io_error(format!("cannot run {program}")))
}

fn checked(output: Output, program: &str, args: &[&str]) -> Result<Output, EmbeddedError> {
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr
        .lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or("no output")
        .to_owned();
    Err(EmbeddedError::Command {
        command: format!("{program} {}", args.first().copied().unwrap_or_default()),
        detail,
    })
}

fn read_port(pgdata: &Path) -> Result<u16, EmbeddedError> {
    let pid_file = fs::read_to_string(pgdata.join("postmaster.pid"))
        .map_err(io_error("cannot read postmaster.pid"))?;
    pid_file
        .lines()
        .nth(3)
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| EmbeddedError::Command {
            command: "postmaster.pid".into(),
            detail: "it does not name a port".into(),
        })
}

fn postmaster_pid(pgdata: &Path) -> Result<String, EmbeddedError> {
    let pid_file = fs::read_to_string(pgdata.join("postmaster.pid"))
        .map_err(io_error("cannot read postmaster.pid"))?;
    Ok(pid_file
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

fn free_loopback_port() -> Result<u16, EmbeddedError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(io_error("cannot find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("cannot find a free port"))?
        .port();
    Ok(port)
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

fn postgres_os_user() -> Result<OsUser, EmbeddedError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("cannot read /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&SUPERUSER) && fields.len() > 3)
        .and_then(|fields| {
            Some(OsUser {
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
        .ok_or(EmbeddedError::NoPostgresUser)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("Silo's data dir paths are UTF-8")
}
