//! Device setup, buffers, readback, the pipeline cache and the [`Kernel`] / [`Step`]
//! pair every op is built on.
//!
//! Over 600 lines: the device, its buffers, the readback and the pipeline cache share one
//! set of handles and their lifetimes; apart they would pass them around in every call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::{GpuError, Result, gpu_err};

/// Lock a mutex even if a panicking thread poisoned it: the guarded data (a cache, an
/// error slot) stays consistent, and we must not panic ourselves.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adapter, device and queue, plus the compiled pipelines.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with: the adapter's own, not WebGPU's defaults,
    /// so that e.g. a 32 MB embedding matrix can be bound as one storage buffer.
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    /// First device error (validation, out of memory). wgpu reports these through a
    /// callback, not at the call that caused them; readbacks turn it into an `Err`.
    error: Arc<Mutex<Option<String>>>,
    /// Why the device was lost (driver reset, `destroy`), once it was: every later call
    /// fails, so the owner must move to another backend.
    lost: Arc<Mutex<Option<String>>>,
    /// Weight matrices by (model file, tensor name): every model loaded on this device from
    /// the same file (the web app runs several sessions of one model) binds the same
    /// buffers instead of uploading its own copy. The file's `Arc` is kept so that its
    /// address, the key, cannot be reused by another file while the entry lives.
    weights: Mutex<WeightCache>,
}

/// (address of a model file's bytes, tensor name) -> (those bytes, the uploaded matrix).
type WeightCache = HashMap<(usize, String), (Arc<Vec<u8>>, super::GpuMatrix)>;

impl GpuContext {
    /// Open the default adapter (a discrete GPU when there is one) with its full limits.
    pub async fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err!("no WebGPU/Vulkan adapter available ({e})"))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("axiscope"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err!("could not open the GPU device '{}': {e}", info.name))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = lock(&slot);
            if slot.is_none() {
                // First line only: wgpu's messages carry multi-line context.
                let msg = e.to_string();
                *slot = Some(msg.lines().next().unwrap_or("unknown error").to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_slot = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_string(),
                wgpu::DeviceLostReason::Unknown => "lost".to_string(),
            };
            let first = message
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            *lock(&lost_slot) = Some(if first.is_empty() {
                why
            } else {
                format!("{why}: {first}")
            });
        });
        Ok(Self {
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            error,
            lost,
            weights: Mutex::new(HashMap::new()),
        })
    }

    /// Why the device was lost, once it was (see [`GpuContext::destroy`]).
    pub fn lost(&self) -> Option<String> {
        lock(&self.lost).clone()
    }

    /// Destroys the device as a driver reset would: every later call fails and
    /// [`GpuContext::lost`] says so. The web app's debug hook uses it to test the fallback.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// The matrix `name` of `file`, uploaded by `upload` on first use on this device.
    pub(crate) fn shared_matrix(
        &self,
        file: &Arc<Vec<u8>>,
        name: &str,
        upload: impl FnOnce() -> Result<super::GpuMatrix>,
    ) -> Result<super::GpuMatrix> {
        let key = (Arc::as_ptr(file) as usize, name.to_string());
        if let Some((_, m)) = lock(&self.weights).get(&key) {
            return Ok(m.clone());
        }
        let m = upload()?;
        lock(&self.weights).insert(key, (file.clone(), m.clone()));
        Ok(m)
    }

    /// One-line description of the adapter, for logs and benchmarks.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.device_type, self.info.backend
        )
    }

    /// Return (and clear) the first device error since the last check.
    pub fn take_error(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(GpuError(e)),
            None => Ok(()),
        }
    }

    fn check_size(&self, label: &str, bytes: u64) -> Result<()> {
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(gpu_err!(
                "buffer '{label}' needs {bytes} bytes, the device allows {max} per storage buffer"
            ));
        }
        Ok(())
    }

    /// Storage buffers are rounded up to 16 bytes: WebGPU rejects empty bindings, and
    /// readback copies need multiples of 4.
    fn padded(bytes: u64) -> u64 {
        bytes.max(16).div_ceil(16) * 16
    }

    /// A zeroed f32/u32 storage buffer of `len` elements (usable as copy source and target).
    pub fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = len as u64 * 4;
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: Self::padded(bytes),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` (f32, u32, ... any plain 4-byte type).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_size(label, bytes.len() as u64)?;
        let mut contents = bytes.to_vec();
        contents.resize(Self::padded(bytes.len() as u64) as usize, 0);
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// Overwrite the start of `buffer` with `data` (takes effect at the next submit).
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > buffer.size() {
            return Err(gpu_err!(
                "write of {} bytes into a {}-byte buffer",
                bytes.len(),
                buffer.size()
            ));
        }
        self.queue.write_buffer(buffer, 0, bytes);
        Ok(())
    }

    /// A uniform buffer holding one parameter block.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Record a compute pass with `f` and submit it.
    pub fn run(&self, f: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>) -> Result<()> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("axiscope pass"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            f(&mut pass)?;
        }
        self.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Copy `len` f32 from `buffer` (starting at element `offset`) back to the CPU.
    pub async fn read_f32(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        let bytes = self
            .read_bytes(buffer, offset as u64 * 4, len as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copy `len` u32 from `buffer` (starting at element `offset`) back to the CPU.
    pub async fn read_u32(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u32>> {
        let bytes = self
            .read_bytes(buffer, offset as u64 * 4, len as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Readback through a staging buffer. Natively `device.poll` drives the map callback
    /// to completion; in the browser the future resolves from the JS promise instead, so
    /// nothing blocks the event loop.
    async fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        if offset + size > buffer.size() {
            return Err(gpu_err!(
                "readback of bytes {offset}..{} from a {}-byte buffer",
                offset + size,
                buffer.size()
            ));
        }
        if size == 0 {
            self.take_error()?;
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        self.read_staging(&staging, size).await
    }

    /// The first `size` bytes of `staging` (a `MAP_READ | COPY_DST` buffer) once every
    /// submitted command has run; the buffer is unmapped again, so it can be reused.
    pub async fn read_staging(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        if size == 0 {
            self.take_error()?;
            return Ok(Vec::new());
        }
        if size > staging.size() {
            return Err(gpu_err!(
                "readback of {size} bytes from a {}-byte staging buffer",
                staging.size()
            ));
        }
        let (sender, receiver) = oneshot();
        staging
            .slice(..size)
            .map_async(wgpu::MapMode::Read, move |r| sender.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err!("waiting for the device failed: {e}"))?;
        let data = match receiver.await {
            Ok(()) => {
                let data = staging
                    .slice(..size)
                    .get_mapped_range()
                    .map(|view| view.to_vec());
                // Unmapped on every path: a reused staging buffer must not stay mapped.
                staging.unmap();
                data.map_err(|e| gpu_err!("reading back a buffer failed: {e}"))
            }
            Err(e) => Err(gpu_err!("reading back a buffer failed: {e}")),
        };
        // A device error explains a failed map better than the map error itself.
        self.take_error()?;
        data
    }

    /// The compute pipeline for `key`, compiled from `source()` on first use.
    /// Shader errors surface through [`GpuContext::take_error`] / the next readback.
    pub(crate) fn pipeline(
        &self,
        key: &str,
        source: impl FnOnce() -> String,
    ) -> wgpu::ComputePipeline {
        if let Some(p) = lock(&self.pipelines).get(key) {
            return p.clone();
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(key),
                source: wgpu::ShaderSource::Wgsl(source().into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            });
        lock(&self.pipelines).insert(key.to_string(), pipeline.clone());
        pipeline
    }

    /// Build a [`Kernel`]: `bindings[i]` is bound at `@binding(i)` of group 0.
    pub(crate) fn kernel(
        &self,
        key: &str,
        source: impl FnOnce() -> String,
        bindings: &[&wgpu::Buffer],
        step: &Step,
        max_tok: u32,
        grid: impl Fn(u32) -> [u32; 3] + Send + Sync + 'static,
    ) -> Kernel {
        let pipeline = self.pipeline(key, source);
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(key),
            layout: &layout,
            entries: &entries,
        });
        Kernel {
            label: key.to_string(),
            pipeline,
            bind_group,
            n_tok: step.n_tok.clone(),
            pos0: step.pos0.clone(),
            max_tok,
            max_end: u32::MAX,
            max_groups: self.limits.max_compute_workgroups_per_dimension,
            grid: Box::new(grid),
        }
    }
}

/// Per-forward-call values shared by all kernels: token count and first position.
/// Set it once before encoding a forward call; one value per submit, because
/// `queue.write_buffer` lands before the whole submission.
pub struct Step {
    pub buffer: wgpu::Buffer,
    n_tok: Arc<AtomicU32>,
    pos0: Arc<AtomicU32>,
}

/// WGSL: `struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepUniform {
    n_tok: u32,
    pos0: u32,
    _pad: [u32; 2],
}

impl Step {
    pub fn new(ctx: &GpuContext) -> Self {
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<StepUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            buffer,
            n_tok: Arc::new(AtomicU32::new(0)),
            pos0: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Tokens `pos0..pos0 + n_tok` are processed by the next submitted pass.
    pub fn set(&self, ctx: &GpuContext, n_tok: u32, pos0: u32) {
        self.n_tok.store(n_tok, Ordering::Relaxed);
        self.pos0.store(pos0, Ordering::Relaxed);
        ctx.queue.write_buffer(
            &self.buffer,
            0,
            bytemuck::bytes_of(&StepUniform {
                n_tok,
                pos0,
                _pad: [0; 2],
            }),
        );
    }

    pub fn n_tok(&self) -> u32 {
        self.n_tok.load(Ordering::Relaxed)
    }

    pub fn pos0(&self) -> u32 {
        self.pos0.load(Ordering::Relaxed)
    }
}

/// A compiled op bound to its buffers. `encode` only records a dispatch.
pub struct Kernel {
    label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    n_tok: Arc<AtomicU32>,
    pos0: Arc<AtomicU32>,
    /// Most tokens the bound buffers hold.
    max_tok: u32,
    /// Bound on `pos0 + n_tok` for ops that address a KV cache by position.
    max_end: u32,
    max_groups: u32,
    /// Workgroup counts for a token count.
    grid: Box<dyn Fn(u32) -> [u32; 3] + Send + Sync>,
}

impl Kernel {
    /// The token count of the [`Step`] this kernel was built with.
    pub fn n_tok(&self) -> u32 {
        self.n_tok.load(Ordering::Relaxed)
    }

    /// Workgroups this kernel dispatches for `n_tok` tokens.
    pub(crate) fn grid(&self, n_tok: u32) -> [u32; 3] {
        (self.grid)(n_tok)
    }

    /// Refuse steps that reach past position `max_end` (the KV cache length).
    pub(crate) fn with_max_end(mut self, max_end: u32) -> Self {
        self.max_end = max_end;
        self
    }

    /// Record this op for the current [`Step`] token count.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let n_tok = self.n_tok();
        if n_tok == 0 {
            return Ok(());
        }
        if n_tok > self.max_tok {
            return Err(gpu_err!(
                "{}: {n_tok} tokens, but its buffers hold {}",
                self.label,
                self.max_tok
            ));
        }
        let end = self.pos0.load(Ordering::Relaxed) as u64 + n_tok as u64;
        if end > self.max_end as u64 {
            return Err(gpu_err!(
                "{}: positions up to {end}, but the cache holds {}",
                self.label,
                self.max_end
            ));
        }
        let [x, y, z] = (self.grid)(n_tok);
        if x.max(y).max(z) > self.max_groups {
            return Err(gpu_err!(
                "{}: grid {x}x{y}x{z} exceeds the device limit {}",
                self.label,
                self.max_groups
            ));
        }
        if x == 0 || y == 0 || z == 0 {
            return Ok(());
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
        Ok(())
    }
}

/// Tokens a buffer of `bytes` holds at `per_token` f32 each (u32::MAX when per_token is 0).
pub(crate) fn tokens_in(buffer: &wgpu::Buffer, per_token: usize) -> u32 {
    if per_token == 0 {
        return u32::MAX;
    }
    (buffer.size() / (per_token as u64 * 4)).min(u32::MAX as u64) as u32
}

/// Fail early, with the op's name, when a buffer cannot hold even one token.
pub(crate) fn need_tokens(
    op: &str,
    what: &str,
    buffer: &wgpu::Buffer,
    per_token: usize,
) -> Result<u32> {
    let n = tokens_in(buffer, per_token);
    if n == 0 {
        return Err(gpu_err!(
            "{op}: buffer '{what}' has {} bytes, one token needs {}",
            buffer.size(),
            per_token * 4
        ));
    }
    Ok(n)
}

/// A one-shot channel: the map callback fills it, the readback future awaits it.
/// (wgpu hands results to callbacks; this keeps the readback an ordinary `async fn`.)
struct OneShot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<OneShot<T>>>);
struct Receiver<T>(Arc<Mutex<OneShot<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(OneShot {
        value: None,
        waker: None,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    fn send(self, value: T) {
        let waker = {
            let mut s = lock(&self.0);
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = lock(&self.0);
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
