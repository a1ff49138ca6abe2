//! The key store's tests: round trips, permissions, damage, wrong
//! passphrases.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

const SECRET: &[u8] = b"-----identity secret bytes 0123456789-----";

#[test]
fn create_unlock_round_trip_0600_and_no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let key = create(&path, "correct horse", SECRET, KdfCost::INSECURE_FOR_TESTS).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let on_disk = fs::read(&path).unwrap();
    assert!(!on_disk.windows(SECRET.len()).any(|w| w == SECRET));
    assert!(!on_disk.windows(32).any(|w| w == key.0.as_ref()));
    assert!(is_protected(&path).unwrap());
    let (key2, secret) = unlock(&path, "correct horse").unwrap();
    assert_eq!(secret.as_slice(), SECRET);
    assert_eq!(*key.0, *key2.0);
}

#[test]
fn wrong_passphrase_is_refused_and_the_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    create(&path, "right", SECRET, KdfCost::INSECURE_FOR_TESTS).unwrap();
    let before = fs::read(&path).unwrap();
    assert!(matches!(
        unlock(&path, "wrong"),
        Err(KeystoreError::WrongPassphrase)
    ));
    assert_eq!(fs::read(&path).unwrap(), before, "nothing lost");
    assert!(unlock(&path, "right").is_ok());
}

#[test]
fn corrupted_files_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    create(&path, "", SECRET, KdfCost::INSECURE_FOR_TESTS).unwrap();
    assert!(!is_protected(&path).unwrap());
    let good = fs::read(&path).unwrap();
    fs::write(&path, b"garbage").unwrap();
    assert!(matches!(
        unlock(&path, ""),
        Err(KeystoreError::Corrupt(_, _))
    ));
    let mut v = good.clone();
    v[4] = 7;
    fs::write(&path, &v).unwrap();
    assert!(matches!(
        unlock(&path, ""),
        Err(KeystoreError::UnknownVersion(_, 7))
    ));
    let mut v = good.clone();
    v[6] = 0xff; // absurd memory cost
    fs::write(&path, &v).unwrap();
    assert!(matches!(
        unlock(&path, ""),
        Err(KeystoreError::Corrupt(_, _))
    ));
    fs::write(&path, &good[..40]).unwrap();
    assert!(unlock(&path, "").is_err());
}

#[test]
fn state_round_trips_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let key = create(
        &dir.path().join("identity.key"),
        "",
        SECRET,
        KdfCost::INSECURE_FOR_TESTS,
    )
    .unwrap();
    let path = dir.path().join("sessions.bin");
    assert!(load_state(&path, &key).unwrap().is_none());
    save_state(&path, &key, b"ratchet state").unwrap();
    assert_eq!(
        load_state(&path, &key).unwrap().unwrap().as_slice(),
        b"ratchet state"
    );
    let mut v = fs::read(&path).unwrap();
    let last = v.len() - 1;
    v[last] ^= 1;
    fs::write(&path, &v).unwrap();
    assert!(matches!(
        load_state(&path, &key),
        Err(KeystoreError::Corrupt(_, _))
    ));
    assert!(!dir.path().join("sessions.tmp").exists());
}

/// A write that fails (here: the target is a directory) leaves no
/// temporary file behind, so a full disk retried every round cannot fill
/// the directory with them.
#[test]
fn a_failed_write_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sessions.bin");
    std::fs::create_dir(&target).unwrap();
    assert!(write_atomic(&target, b"state").is_err());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sessions.bin"], "no temporary left: {names:?}");
}
