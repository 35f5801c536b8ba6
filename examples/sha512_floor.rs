//! The floor under a signed 1 MiB POST on this machine: what any proxy must spend to read a
//! 1 MiB body from one loopback socket, SHA-512 it (for its `Content-Digest`) and write it to
//! another, with no HTTP, no signature, no allocation per request. Warden's CPU per request
//! for `bench/compare.sh signed1m` is compared with it in `docs/benchmarks.md`.
//!
//! ```text
//! taskset -c 0 cargo run --release --example sha512_floor -- [read buffer KiB, default 32] [nohash]
//! ```
//!
//! It prints the proxying thread's CPU time (user + system, from `/proc/thread-self/stat`) per
//! MiB. The sending client and the receiving upstream run on threads of their own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sha2::{Digest, Sha512};

const BODY: usize = 1 << 20;
const BODIES: usize = 2000;

/// This thread's CPU time so far, in seconds (clock ticks of 10 ms: run long enough).
fn thread_cpu() -> std::io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let buf_kib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let hash = args.next().as_deref() != Some("nohash");

    let upstream = TcpListener::bind("127.0.0.1:0")?;
    let upstream_addr = upstream.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = upstream.accept()?;
        let mut sink = vec![0u8; 256 * 1024];
        while conn.read(&mut sink)? > 0 {}
        Ok(())
    });
    let front = TcpListener::bind("127.0.0.1:0")?;
    let front_addr = front.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let mut conn = TcpStream::connect(front_addr)?;
        let body = vec![7u8; BODY];
        for _ in 0..BODIES {
            conn.write_all(&body)?;
        }
        Ok(())
    });

    let (mut client, _) = front.accept()?;
    let mut to_upstream = TcpStream::connect(upstream_addr)?;
    let mut buf = vec![0u8; buf_kib.max(1) * 1024];
    let mut digest = Sha512::new();
    let (cpu, wall) = (thread_cpu()?, std::time::Instant::now());
    let (mut done, mut read) = (0, 0);
    while done < BODIES {
        let want = (BODY - read).min(buf.len());
        let n = client.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if hash {
            digest.update(&buf[..n]);
        }
        to_upstream.write_all(&buf[..n])?;
        read += n;
        if read == BODY {
            std::hint::black_box(digest.finalize_reset());
            (read, done) = (0, done + 1);
        }
    }
    println!(
        "read buffer {buf_kib} KiB, sha-512 {}: {:.3} ms CPU per MiB proxied (wall {:.3} ms)",
        if hash { "on" } else { "off" },
        (thread_cpu()? - cpu) * 1e3 / done.max(1) as f64,
        wall.elapsed().as_secs_f64() * 1e3 / done.max(1) as f64,
    );
    Ok(())
}
