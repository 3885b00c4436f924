//! `lethe keygen --out DIR`: a fresh Ed25519 signing key pair for certificates. Prints the two
//! paths, never the private key; refuses to overwrite an existing key.

use crate::report::keys::{self, keygen};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Folder for signer.key.pem (PKCS#8, mode 0600) and signer.pub.pem (created with mode 0700
    /// if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: KeygenArgs) -> Result<ExitCode> {
    let (private, public) = keygen(&args.out)?;
    let vk = keys::load_verifying_key(&public)?;
    println!("private key  {}  (keep it secret)", private.display());
    println!("public key   {}", public.display());
    println!("key id       {}", crate::report::dsse::key_id(&vk));
    Ok(ExitCode::SUCCESS)
}
