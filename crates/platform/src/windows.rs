//! Windows: input idle time from `GetLastInputInfo`, CPU from `GetSystemTimes` and
//! `GetProcessTimes`, `THREAD_PRIORITY_IDLE`, power from `GetSystemPowerStatus`, free space
//! from `GetDiskFreeSpaceExW`.

use std::path::Path;
use std::time::Duration;

use windows_sys::Win32::Foundation::{ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL, FILETIME};
use windows_sys::Win32::System::Threading as threading;

use crate::parse::{self, PowerState};

pub const CPU_SOURCE: &str = "GetSystemTimes";

pub struct InputIdle;

impl InputIdle {
    pub fn detect() -> Self {
        InputIdle
    }

    pub fn idle(&mut self) -> Option<Duration> {
        use windows_sys::Win32::System::SystemInformation::GetTickCount;
        use windows_sys::Win32::UI::Input::KeyboardAndMouse::{GetLastInputInfo, LASTINPUTINFO};
        let mut info = LASTINPUTINFO { cbSize: std::mem::size_of::<LASTINPUTINFO>() as u32, dwTime: 0 };
        // SAFETY: GetLastInputInfo fills the struct we own, whose size we set.
        if unsafe { GetLastInputInfo(&mut info) } == 0 {
            return None;
        }
        // SAFETY: no preconditions. Both counters are 32-bit milliseconds that wrap together.
        let now = unsafe { GetTickCount() };
        Some(Duration::from_millis(u64::from(now.wrapping_sub(info.dwTime))))
    }

    pub fn describe(&self) -> &'static str {
        "GetLastInputInfo (this session's input)"
    }
}

fn ticks(time: FILETIME) -> u64 {
    (u64::from(time.dwHighDateTime) << 32) | u64::from(time.dwLowDateTime)
}

const ZERO: FILETIME = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };

pub fn cpu_sample() -> Option<crate::CpuSample> {
    let (mut idle, mut kernel, mut user) = (ZERO, ZERO, ZERO);
    // SAFETY: GetSystemTimes fills the three structs we own.
    if unsafe { threading::GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
        return None;
    }
    // Kernel time includes idle time.
    let total = ticks(kernel) + ticks(user);
    let busy = total.saturating_sub(ticks(idle));
    let (mut created, mut exited, mut own_kernel, mut own_user) = (ZERO, ZERO, ZERO, ZERO);
    // SAFETY: the pseudo-handle of this process and four structs we own.
    let ok = unsafe {
        threading::GetProcessTimes(
            threading::GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut own_kernel,
            &mut own_user,
        )
    };
    (ok != 0).then(|| crate::CpuSample { busy, total, own: ticks(own_kernel) + ticks(own_user) })
}

pub fn lower_this_thread() -> Option<String> {
    // SAFETY: the pseudo-handle of the calling thread and a valid priority.
    if unsafe { threading::SetThreadPriority(threading::GetCurrentThread(), threading::THREAD_PRIORITY_IDLE) } != 0 {
        return Some("THREAD_PRIORITY_IDLE".into());
    }
    None
}

pub fn thread_cpu_time() -> Option<Duration> {
    let (mut created, mut exited, mut kernel, mut user) = (ZERO, ZERO, ZERO, ZERO);
    // SAFETY: the pseudo-handle of the calling thread and four structs we own.
    let ok = unsafe {
        threading::GetThreadTimes(threading::GetCurrentThread(), &mut created, &mut exited, &mut kernel, &mut user)
    };
    // 100-nanosecond units.
    (ok != 0).then(|| Duration::from_nanos((ticks(kernel) + ticks(user)).saturating_mul(100)))
}

pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    // The call succeeds for a missing file on an existing disk; the engine asks about folders.
    std::fs::metadata(path)?;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut available = 0u64;
    // SAFETY: a NUL-terminated wide path; the two totals we do not want may be null.
    let ok = unsafe { GetDiskFreeSpaceExW(wide.as_ptr(), &mut available, std::ptr::null_mut(), std::ptr::null_mut()) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(available)
}

pub fn is_disk_full_code(code: i32) -> bool {
    code as u32 == ERROR_DISK_FULL || code as u32 == ERROR_HANDLE_DISK_FULL
}

pub fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

pub fn power_state() -> PowerState {
    use windows_sys::Win32::System::Power::{GetSystemPowerStatus, SYSTEM_POWER_STATUS};
    let mut status = SYSTEM_POWER_STATUS {
        ACLineStatus: 255,
        BatteryFlag: 255,
        BatteryLifePercent: 255,
        SystemStatusFlag: 0,
        BatteryLifeTime: 0,
        BatteryFullLifeTime: 0,
    };
    // SAFETY: GetSystemPowerStatus fills the struct we own.
    if unsafe { GetSystemPowerStatus(&mut status) } == 0 {
        return PowerState::UNKNOWN;
    }
    parse::power_from_windows(status.ACLineStatus, status.BatteryFlag, status.BatteryLifePercent)
}

/// Running under the service control manager (`idlegrid engine --as-service`).
pub mod service {
    use std::ffi::OsString;
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::time::Duration;

    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};

    type OnStop = Box<dyn FnOnce() + Send>;

    /// What the dispatcher's thread needs: the service's name, what to call on Stop, and the
    /// signal that the engine has shut down.
    struct Running {
        name: String,
        on_stop: Option<OnStop>,
        stopped: Option<mpsc::Receiver<()>>,
    }

    static RUNNING: Mutex<Option<Running>> = Mutex::new(None);
    static STOPPED: Mutex<Option<mpsc::Sender<()>>> = Mutex::new(None);

    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// Hand this thread to the service control manager until the service stops: `on_stop` is
    /// called when Windows asks the service to stop, and the service reports itself stopped
    /// once [`report_stopped`] is called. Fails at once when the process was not started by
    /// the service control manager.
    pub fn dispatch(name: &str, on_stop: OnStop) -> Result<(), String> {
        let (stopped_tx, stopped_rx) = mpsc::channel();
        *STOPPED.lock().unwrap_or_else(|p| p.into_inner()) = Some(stopped_tx);
        *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Running { name: name.to_string(), on_stop: Some(on_stop), stopped: Some(stopped_rx) });
        windows_service::service_dispatcher::start(name, ffi_service_main)
            .map_err(|e| format!("not started as a Windows service ({e})"))
    }

    /// The engine has shut down: the service may say it stopped.
    pub fn report_stopped() {
        if let Some(sender) = STOPPED.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = sender.send(());
        }
    }

    fn status(state: ServiceState, accept: ServiceControlAccept, wait: Duration) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: ServiceExitCode::Win32(0),
            checkpoint: 0,
            wait_hint: wait,
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<OsString>) {
        let Some(mut running) = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let (stop_tx, stop_rx) = mpsc::channel();
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                let _ = stop_tx.send(());
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(handle) = service_control_handler::register(&running.name, handler) else { return };
        let accept = ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN;
        let _ = handle.set_service_status(status(ServiceState::Running, accept, Duration::ZERO));
        let _ = stop_rx.recv();
        let _ = handle.set_service_status(status(
            ServiceState::StopPending,
            ServiceControlAccept::empty(),
            Duration::from_secs(30),
        ));
        if let Some(on_stop) = running.on_stop.take() {
            on_stop();
        }
        if let Some(stopped) = running.stopped.take() {
            let _ = stopped.recv_timeout(Duration::from_secs(30));
        }
        let _ = handle.set_service_status(status(ServiceState::Stopped, ServiceControlAccept::empty(), Duration::ZERO));
    }
}
