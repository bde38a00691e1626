//! Steering of tunnel datagrams to the forwarding worker that owns their peer:
//! the classic BPF program attached to the tunnel's `SO_REUSEPORT` group, and
//! the ownership rule it follows (peer `i` belongs to worker `i mod N`).
//!
//! Our WireGuard receiver index carries the peer's position in its upper 24
//! bits (boringtun's `Tunn::new(.., index, ..)` uses `index << 8` plus an 8-bit
//! session counter), little-endian at bytes 4..8 of a handshake response
//! (type 2), a cookie reply (type 3) and a data message (type 4). The kernel
//! runs the program on the UDP payload and delivers the datagram to the
//! group's socket of the index it returns: `(receiver index >> 8) mod N` for
//! those types, 0 for everything else (handshake initiations carry no index of
//! ours: worker 0 finds their peer by its static key and hands them over).

use crate::io::udpbatch::set_socket_option;
use std::io;
use std::os::fd::RawFd;

/// The forwarding worker that owns peer `peer` among `workers`.
pub fn owner_of(peer: usize, workers: usize) -> usize {
    peer % workers.max(1)
}

// Classic BPF opcodes (linux/filter.h): class | size or operation | source.
// BPF_LD (0) | BPF_B | BPF_ABS.
const LD_B_ABS: u16 = 0x10 | 0x20;
const JGE_K: u16 = 0x05 | 0x30;
const JGT_K: u16 = 0x05 | 0x20;
const TAX: u16 = 0x07;
const LSH_K: u16 = 0x04 | 0x60;
const ADD_X: u16 = 0x04 | 0x08;
const MOD_K: u16 = 0x04 | 0x90;
const RET_A: u16 = 0x06 | 0x10;
const RET_K: u16 = 0x06;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program that picks the owner's socket among `workers` (at least 1).
pub fn steering_program(workers: usize) -> Vec<libc::sock_filter> {
    let n = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    vec![
        // A = message type; anything but 2..=4 goes to worker 0 (the last op).
        op(LD_B_ABS, 0, 0, 0),
        op(JGE_K, 0, 12, 2),
        op(JGT_K, 11, 0, 4),
        // A = receiver index >> 8 = b5 | b6 << 8 | b7 << 16 (little-endian;
        // BPF's word loads are big-endian, so it is put together bytewise).
        op(LD_B_ABS, 0, 0, 5),
        op(TAX, 0, 0, 0),
        op(LD_B_ABS, 0, 0, 6),
        op(LSH_K, 0, 0, 8),
        op(ADD_X, 0, 0, 0),
        op(TAX, 0, 0, 0),
        op(LD_B_ABS, 0, 0, 7),
        op(LSH_K, 0, 0, 16),
        op(ADD_X, 0, 0, 0),
        op(MOD_K, 0, 0, n),
        op(RET_A, 0, 0, 0),
        op(RET_K, 0, 0, 0),
    ]
}

/// Attaches [`steering_program`] to the reuseport group of `fd` (every socket
/// of the group, in the order they were bound, is one worker's).
pub fn attach_steering(fd: RawFd, workers: usize) -> io::Result<()> {
    let mut program = steering_program(workers);
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("program too long"))?,
        filter: program.as_mut_ptr(),
    };
    // `prog` points at `program`, alive for the call; the kernel copies it.
    set_socket_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program over `packet` as the kernel does for the ops
    /// [`steering_program`] uses (a load past the end ends it with 0).
    fn run(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let ins = program[pc];
            pc += 1;
            match ins.code {
                LD_B_ABS => match packet.get(ins.k as usize) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                JGE_K => pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf }),
                JGT_K => pc += usize::from(if a > ins.k { ins.jt } else { ins.jf }),
                TAX => x = a,
                LSH_K => a <<= ins.k,
                ADD_X => a = a.wrapping_add(x),
                MOD_K => a %= ins.k,
                RET_A => return a,
                RET_K => return ins.k,
                other => panic!("op {other:#x} not expected"),
            }
        }
    }

    fn message(kind: u8, receiver_idx: u32, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m[4..8].copy_from_slice(&receiver_idx.to_le_bytes());
        m
    }

    #[test]
    fn datagrams_with_our_index_go_to_the_owner_of_their_peer() {
        for workers in [1usize, 2, 3, 16] {
            let program = steering_program(workers);
            for peer in [0usize, 1, 2, 5, 17, 255, 256, 70_000, (1 << 24) - 1] {
                for session in [0u32, 1, 0xff] {
                    let idx = (u32::try_from(peer).unwrap() << 8) | session;
                    let owner = u32::try_from(owner_of(peer, workers)).unwrap();
                    // Sizes as on the wire: response 92, cookie reply 64, data >= 32.
                    for (kind, len) in [(2u8, 92usize), (3, 64), (4, 32), (4, 1452)] {
                        let got = run(&program, &message(kind, idx, len));
                        assert_eq!(got, owner, "{workers} workers, peer {peer}, type {kind}");
                    }
                }
            }
        }
    }

    #[test]
    fn initiations_and_garbage_go_to_worker_0() {
        let program = steering_program(4);
        let idx = 3 << 8;
        for kind in [0u8, 1, 5, 0xff] {
            assert_eq!(run(&program, &message(kind, idx, 148)), 0, "type {kind}");
        }
        // Too short to carry an index: the load fails and ends the program with 0.
        assert_eq!(run(&program, &[4, 0, 0, 0, 0, 3]), 0);
        assert_eq!(run(&program, &[]), 0);
    }

    #[test]
    fn peers_are_spread_evenly_over_the_workers() {
        let owners: Vec<usize> = (0..6).map(|p| owner_of(p, 3)).collect();
        assert_eq!(owners, [0, 1, 2, 0, 1, 2]);
        assert!((0..10).all(|p| owner_of(p, 1) == 0));
        assert_eq!(owner_of(7, 0), 0, "no workers counts as one");
    }
}
