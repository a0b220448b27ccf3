//! Snapshot decoding and compilation (`props::check_snapshot`).

use portcullis_fuzz::props;

fn main() {
    // `snapshot --write-seed FILE`: the seed corpus entry (a valid snapshot using most fields).
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, file] = args.as_slice()
        && flag == "--write-seed"
    {
        std::fs::write(file, props::snapshot_seed()).expect("writing the seed");
        return;
    }
    let clients = portcullis_data_plane::upstream::ClientCache::new();
    let check = |data: &[u8]| props::check_snapshot(&clients, data);
    portcullis_fuzz::driver::run("snapshot", check);
}
