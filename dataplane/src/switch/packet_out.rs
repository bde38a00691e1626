//! Packet-outs on forwarding worker 0: a frame the controller injects, run
//! through its actions (and the tables for `output:TABLE`) with the ports and
//! tunnels of the worker that owns them.

use super::event_loop::{Scratch, Switch};
use super::output::Output;
use dataplane_core::exec::{execute_counted, FrameBuf};
use dataplane_core::offload::VnetHdr;
use dataplane_core::packet::parse;
use dataplane_core::packet_io::{PacketOutError, PacketOutJob};
use openflow::flow::{port, Action};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Switch {
    /// Runs a packet-out: the actions on the frame, `output:TABLE` through the tables
    /// with the frame as the actions before it left it. Control path: it may allocate.
    pub(super) fn packet_out(
        &mut self,
        job: PacketOutJob,
        scratch: &mut Scratch,
        now: Instant,
    ) -> Result<(), PacketOutError> {
        let in_idx = match job.in_port {
            port::CONTROLLER | port::ANY => usize::MAX,
            p => self
                .egress
                .ports
                .iter()
                .position(|q| q.number == p)
                .ok_or(PacketOutError::BadInPort(p))?,
        };
        for a in &job.actions {
            if let Action::Output { port: p, .. } = a {
                let reserved = matches!(
                    *p,
                    port::TABLE | port::IN_PORT | port::FLOOD | port::ALL | port::CONTROLLER
                );
                if !reserved && !self.egress.ports.iter().any(|q| q.number == *p) {
                    return Err(PacketOutError::BadOutPort(*p));
                }
            }
            if let Action::Group(g) = a {
                if self.pipeline.groups().get(*g).is_none() {
                    return Err(PacketOutError::BadOutGroup(*g));
                }
            }
        }
        let mut frame = FrameBuf::with_capacity(job.data.len() + 64);
        frame.fill(&job.data);
        let (_, mut layout) =
            parse(frame.bytes(), job.in_port).map_err(|_| PacketOutError::BadPacket)?;
        self.egress
            .shared
            .channel
            .packet_outs
            .fetch_add(1, Ordering::Relaxed);
        let mut to_table: Option<Vec<u8>> = None;
        let mut out = Output {
            egress: &self.egress,
            tunnels: &mut self.tunnels,
            icmp: &mut scratch.icmp,
            segment: &mut scratch.segment,
            offload: VnetHdr::NONE,
            in_idx,
            classified: None,
            in_port: job.in_port,
            to_owner: Some(&mut self.crew),
        };
        execute_counted(
            &job.actions,
            &mut frame,
            &mut layout,
            self.pipeline.groups(),
            |p, bytes, before| {
                if p == port::TABLE {
                    to_table.get_or_insert_with(|| bytes.to_vec());
                } else {
                    out.output(p, bytes, before);
                }
            },
        );
        if let Some(bytes) = to_table {
            let mut frame = FrameBuf::with_capacity(bytes.len() + 64);
            frame.fill(&bytes);
            self.process(in_idx, job.in_port, &mut frame, VnetHdr::NONE, scratch, now);
        }
        Ok(())
    }
}
