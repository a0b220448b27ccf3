//! Request path normalisation (`props::check_path`).

use portcullis_fuzz::props;

fn main() {
    let check = |data: &[u8]| props::check_path(data);
    portcullis_fuzz::driver::run("path", check);
}
