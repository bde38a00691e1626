//! `scvm migrate`'s progress bar (indicatif, on stderr, only at a terminal):
//! during the disk copy the bytes mirrored and the rate; during the memory copy
//! the RAM sent, the rate, the guest's dirty rate and QEMU's expected downtime.
//! It only draws; the figures come from `hypervisor_glue`.

use hypervisor_glue::storage::{Phase, Progress};
use hypervisor_glue::MigrationInfo;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar, or nothing when hidden (JSON output, not a terminal).
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar on stderr; `hidden` draws nothing.
    pub fn new(hidden: bool) -> Bar {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>6} [{bar:30}] {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar { bar }
    }

    /// Figures of a migration with its disk.
    pub fn storage(&self, p: &Progress) {
        match p.phase {
            Phase::Disk => {
                self.bar.set_prefix("disk");
                self.bar.set_length(p.disk_total);
                self.bar.set_position(p.disk_copied);
                self.bar
                    .set_message(format!("{}/s", HumanBytes(p.disk_rate)));
            }
            Phase::Memory | Phase::PostCopy => {
                self.bar.set_prefix(if p.phase == Phase::Memory {
                    "memory"
                } else {
                    "post"
                });
                self.ram(
                    p.ram_transferred,
                    p.ram_remaining,
                    p.ram_total,
                    p.ram_mbps,
                    p.dirty_pages_rate,
                    p.expected_downtime_ms,
                );
            }
        }
    }

    /// Figures of a memory-only migration.
    pub fn memory(&self, info: &MigrationInfo) {
        self.bar.set_prefix("memory");
        if let Some(ram) = &info.ram {
            self.ram(
                ram.transferred,
                ram.remaining,
                ram.total,
                ram.mbps,
                ram.dirty_pages_rate,
                info.expected_downtime,
            );
        }
    }

    fn ram(
        &self,
        transferred: u64,
        remaining: u64,
        total: u64,
        mbps: f64,
        dirty_pages_rate: u64,
        expected_downtime_ms: Option<i64>,
    ) {
        // Sent plus left grows past the RAM size when pages are sent again.
        self.bar.set_length(total.max(transferred + remaining));
        self.bar.set_position(transferred);
        let downtime = expected_downtime_ms.map_or("-".to_owned(), |d| format!("{d} ms"));
        self.bar.set_message(format!(
            "{mbps:.0} Mbit/s, dirty {dirty_pages_rate} pages/s, expected downtime {downtime}"
        ));
    }

    /// Leaves the last figures on screen.
    pub fn finish(&self) {
        self.bar.abandon();
    }
}
