// The playground is embedded with include_dir, which cannot tell cargo about its files.
fn main() {
    println!("cargo:rerun-if-changed=playground/dist");
}
