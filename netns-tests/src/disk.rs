//! The guest disks of the storage-migration tests and benchmark: qcow2 images
//! made and pre-filled with `qemu-img`/`qemu-io`, and the check of what the test
//! guest's block writer (`scripts/build-guest.sh`, `sc.disk=write`) left on a
//! disk: the pre-filled region intact, then the known block stream as an
//! unbroken prefix, and nothing else. It only runs QEMU's image tools on files it
//! is given; it never starts a VM.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Size of one block of the guest's stream.
pub const BLOCK: usize = 4096;
/// Where the guest writes its stream by default (`sc.disk.base`, in blocks).
pub const STREAM_BASE_BLOCKS: u64 = 32_768;
/// The byte the host pre-fills the start of a source disk with.
pub const PREFILL_BYTE: u8 = 0xab;

fn tool(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?} (install qemu-utils)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates an empty qcow2 image of `size_mib` MiB (sparse: nothing allocated).
pub fn create_qcow2(path: &Path, size_mib: u64) -> Result<()> {
    tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(path)
            .arg(format!("{size_mib}M")),
    )?;
    Ok(())
}

/// Writes [`PREFILL_BYTE`] over the first `mib` MiB of the image: data the
/// mirror must really copy.
pub fn prefill(path: &Path, mib: u64) -> Result<()> {
    if mib > 0 {
        tool(
            Command::new("qemu-io")
                .args(["-f", "qcow2", "-c"])
                .arg(format!("write -P {PREFILL_BYTE} 0 {mib}M"))
                .arg(path),
        )?;
    }
    Ok(())
}

/// Block `i` of the guest's stream, as its writer makes it.
pub fn stream_block(i: u64) -> Vec<u8> {
    format!("SCBLK{i:011}").repeat(BLOCK / 16).into_bytes()
}

/// The highest `SC-DISK-WROTE n` a serial log shows: blocks the guest wrote.
pub fn blocks_reported(serial: &str) -> Option<u64> {
    serial
        .lines()
        .filter_map(|l| l.split("SC-DISK-WROTE ").nth(1)?.trim().parse().ok())
        .max()
}

/// Checks the qcow2 image `path` block for block: the first `prefill_mib` MiB
/// hold [`PREFILL_BYTE`], the stream's blocks 0..n follow at
/// [`STREAM_BASE_BLOCKS`] with nothing missing or changed, and every other byte
/// is zero. Returns n, the blocks of the stream found.
pub fn check_stream(path: &Path, prefill_mib: u64) -> Result<u64> {
    let raw = tempfile::NamedTempFile::new()?;
    tool(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(path)
            .arg(raw.path()),
    )?;
    let bytes = std::fs::read(raw.path())?;
    let prefill = usize::try_from(prefill_mib)? << 20;
    let base = usize::try_from(STREAM_BASE_BLOCKS)? * BLOCK;
    anyhow::ensure!(
        bytes.len() > base,
        "the disk is smaller than the stream's base"
    );
    if let Some(at) = bytes[..prefill].iter().position(|b| *b != PREFILL_BYTE) {
        bail!("the pre-filled region differs at byte {at}");
    }
    if let Some(at) = bytes[prefill..base].iter().position(|b| *b != 0) {
        bail!(
            "a byte between the pre-filled region and the stream is set: {}",
            prefill + at
        );
    }
    let mut n = 0u64;
    for block in bytes[base..].chunks(BLOCK) {
        if block != stream_block(n).as_slice() {
            break;
        }
        n += 1;
    }
    let after = base + usize::try_from(n)? * BLOCK;
    if let Some(at) = bytes[after..].iter().position(|b| *b != 0) {
        let offset = after + at;
        bail!(
            "after {n} blocks of the stream, byte {offset} (block {}) is not zero: a block missing or changed",
            (offset - base) / BLOCK
        );
    }
    Ok(n)
}
