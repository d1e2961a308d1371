//! The systemd units in `ops/systemd` load without a warning and stay hardened: checked by
//! systemd's own `systemd-analyze` (`verify`, and `security` with an exposure ceiling), with the
//! binary path pointed at an executable that exists here.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 2] = ["silo-serve.service", "silo-worker.service"];

/// Exposure as `systemd-analyze security` scores it, times ten: at most 2.0 ("OK").
const MOST_EXPOSURE_TIMES_TEN: u32 = 20;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/systemd")
}

/// A copy of the units whose `ExecStart` runs this test binary (verify wants it to exist).
fn units_with_a_real_binary(name: &str) -> tempdir::Dir {
    let dir = tempdir::Dir::new(name);
    let binary = std::env::current_exe().expect("the test binary's path");
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("the unit exists");
        assert!(text.contains("ExecStart=/usr/local/bin/silo "), "{unit}");
        let text = text.replace("/usr/local/bin/silo", &binary.to_string_lossy());
        std::fs::write(dir.path().join(unit), text).expect("written");
    }
    dir
}

fn analyze(arguments: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(arguments)
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (apt-get install systemd; .ci/run does)")
}

#[test]
fn the_units_verify_cleanly_and_stay_hardened() {
    let dir = units_with_a_real_binary("units-verified");
    for unit in UNITS {
        let path = dir.path().join(unit);
        let verified = analyze(&["verify"], &path);
        let said = String::from_utf8_lossy(&verified.stderr).into_owned()
            + &String::from_utf8_lossy(&verified.stdout);
        // A bad value is only a warning to systemd (it ignores the line): fail on any output.
        assert!(
            verified.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
        let threshold = format!("--threshold={MOST_EXPOSURE_TIMES_TEN}");
        let security = analyze(&["security", "--offline=true", &threshold], &path);
        let report = String::from_utf8_lossy(&security.stdout);
        assert!(
            security.status.success(),
            "{unit} is exposed above {}: {}",
            f64::from(MOST_EXPOSURE_TIMES_TEN) / 10.0,
            report.lines().last().unwrap_or_default()
        );
        let text = std::fs::read_to_string(&path).expect("read");
        for must in ["User=silo", "NoNewPrivileges=yes", "ProtectSystem=strict"] {
            assert!(text.contains(must), "{unit} lacks {must}");
        }
    }
}

#[test]
fn a_unit_with_a_bad_value_is_caught() {
    // The check above must be able to fail: a misspelt boolean is only a warning to systemd.
    let dir = units_with_a_real_binary("units-spoilt");
    let path = dir.path().join(UNITS[0]);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
    )
    .expect("written");
    let verified = analyze(&["verify"], &path);
    assert!(!String::from_utf8_lossy(&verified.stderr).trim().is_empty());
}

/// A temporary folder removed on drop.
mod tempdir {
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("silo-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("a temporary folder");
            Self(path)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
