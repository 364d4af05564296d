//! The X11 idle-time source against a real X server (Xvfb, installed by .ci/run), with input
//! injected through the XTest extension, as a keyboard would.
#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use idlegrid_platform::X11Idle;

struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_xvfb() -> (Xvfb, String) {
    let xvfb = ["/usr/bin/Xvfb", "/usr/local/bin/Xvfb"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Xvfb is needed for this test: `cargo xtask prerequisites --install` installs it");
    // A display number unlikely to be taken, different per test process.
    let display = format!(":{}", 90 + std::process::id() % 500);
    let child = Command::new(xvfb)
        .arg(&display)
        .args(["-screen", "0", "640x480x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Xvfb(child), display)
}

#[test]
fn x11_reports_time_since_input_and_input_resets_it() {
    let (_server, display) = start_xvfb();
    // SAFETY: tests in this file run in their own process; nothing else reads DISPLAY here.
    unsafe { std::env::set_var("DISPLAY", &display) };
    let mut idle = None;
    for _ in 0..100 {
        idle = X11Idle::connect();
        if idle.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle = idle.expect("connect to Xvfb");
    std::thread::sleep(Duration::from_millis(400));
    let before = idle.idle().unwrap();
    assert!(before >= Duration::from_millis(300), "no input yet: idle {before:?}");

    // Press and release a key through XTest: the server counts it as user input.
    use x11rb::connection::Connection;
    use x11rb::protocol::xtest::ConnectionExt as _;
    let (connection, screen) = x11rb::connect(Some(&display)).unwrap();
    let root = connection.setup().roots[screen].root;
    connection.xtest_fake_input(2, 38, 0, root, 0, 0, 0).unwrap(); // KeyPress of keycode 38
    connection.xtest_fake_input(3, 38, 0, root, 0, 0, 0).unwrap(); // KeyRelease
    // A round trip: the server has handled the fake input before it answers.
    use x11rb::protocol::xproto::ConnectionExt as _;
    connection.get_input_focus().unwrap().reply().unwrap();
    let after = idle.idle().unwrap();
    assert!(after < before, "input resets the idle time: {before:?} then {after:?}");
    assert!(after < Duration::from_millis(300), "{after:?}");

    // Without a display there is no X11 source (and the engine treats that as no user input).
    // SAFETY: as above.
    unsafe { std::env::set_var("DISPLAY", ":9999") };
    assert!(X11Idle::connect().is_none());
}
