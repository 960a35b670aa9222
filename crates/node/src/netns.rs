//! Network namespaces for `bench --transport udp --netns` (root only): one
//! namespace per node, each joined by a veth pair to a bridge in a namespace
//! of its own (multicast snooping off, so IP multicast floods), addresses
//! only inside those namespaces. Everything is deleted when dropped.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

pub struct Netns {
    tag: u32,
    nodes: usize,
    made: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (Debian package iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates the namespaces for `nodes` nodes; `tag` keeps names unique.
    pub fn create(nodes: usize, tag: u32) -> Result<Netns, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("--netns needs root (it creates network namespaces)".into());
        }
        let mut n = Netns {
            tag: tag % 100_000,
            nodes,
            made: Vec::new(),
        };
        n.build().inspect_err(|_| n.remove())?;
        Ok(n)
    }

    fn bridge(&self) -> String {
        format!("rzab{}b", self.tag)
    }

    /// The namespace of node `i`.
    pub fn name(&self, i: usize) -> String {
        format!("rzab{}n{i}", self.tag)
    }

    /// Node `i`'s address inside its namespace.
    pub fn address(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, i as u8 + 1))
    }

    fn build(&mut self) -> Result<(), String> {
        let br = self.bridge();
        ip(&["netns", "add", &br])?;
        self.made.push(br.clone());
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..self.nodes {
            let ns = self.name(i);
            ip(&["netns", "add", &ns])?;
            self.made.push(ns.clone());
            let (a, b) = (format!("v{}a{i}", self.tag), format!("v{}b{i}", self.tag));
            ip(&[
                "link", "add", &a, "netns", &ns, "type", "veth", "peer", "name", &b, "netns", &br,
            ])?;
            ip(&["-n", &br, "link", "set", &b, "master", "br0", "up"])?;
            let addr = format!("{}/24", self.address(i));
            ip(&["-n", &ns, "link", "set", &a, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(())
    }

    fn remove(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = ip(&["netns", "del", &ns]);
        }
    }

    /// `command` run inside node `i`'s namespace.
    pub fn wrap(&self, i: usize, command: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name(i)]);
        c.arg(command.get_program());
        c.args(command.get_args());
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}
