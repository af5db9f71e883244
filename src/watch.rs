//! The live index: follows an [`Engine`]'s roots through file-system notifications and brings
//! the index up to date as files are created, changed, renamed and deleted.
//!
//! This module owns what is watched, which notifications matter, how they are debounced into
//! batches, which paths a batch hands to [`Engine::update`], and what is reported. It indexes
//! nothing itself: the engine's writer walks, hashes, embeds and commits exactly as
//! `ponder index` does, and searches keep reading the last commit meanwhile.
//!
//! **Watching.** With inotify (Linux) every directory the indexer would enter is watched on its
//! own, non-recursively; the walk that finds them follows `ingest::walk`'s rules (.gitignore and
//! .ignore, hidden entries, version-control and index directories), so `.git`, `target/` or
//! `node_modules/` cost no watches and send no events. Directories are added as they appear
//! (and re-checked when a `.gitignore` changes). Elsewhere (FSEvents, ReadDirectoryChangesW:
//! recursion is native there and per-directory watches are costly) each root is watched
//! recursively and the same rules are applied to the events. A root that is a file is followed
//! through its parent directory, because editors save by replacing the file. A root that
//! disappears is removed from the index and looked for again every second.
//!
//! **Filtering.** Access events (opening, reading) are ignored, except a close after writing.
//! So are paths in the index directory or any ponder index directory, in version-control
//! directories, with a hidden component below the root (unless the engine's walk includes hidden
//! files), ignored by .gitignore/.ignore, under none of the roots, of a type no reader takes, and
//! files whose size and modification time still match the index. A change to a `.gitignore` or
//! `.ignore` file stands for its whole folder.
//!
//! **Debouncing.** The first relevant event opens a batch; it is flushed after `debounce_ms`
//! without relevant events, or `max_delay_ms` after it opened, whichever comes first. The
//! update runs on the watcher's thread; events arriving meanwhile queue in the notification
//! channel (unbounded) and form the next batch. A lost-events notice (inotify queue overflow)
//! makes the next batch every root. A failed update is reported and its paths retried with a
//! growing delay (1 s doubling to 60 s) together with whatever changes next.
//!
//! **Batches.** Each path becomes its canonical form: the file or folder itself if it exists
//! (a created folder is walked), else the canonical form of its deepest existing ancestor with
//! the rest of the name appended, kept only if something is indexed under it (the writer then
//! removes it: a deleted or renamed-away path shows up as gone). Paths under another path of the
//! batch are dropped, and past 256 paths the deepest are replaced by their folders, so a burst
//! of a thousand files is a handful of walks and commits, not a thousand.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher, WatcherKind};

use crate::engine::{Engine, IndexJob, Snapshot};
use crate::error::{Error, Result};
use crate::fsutil::mtime_ns;
use crate::index::writer::is_under;
use crate::index::{IndexReport, Progress};
use crate::ingest::{self, WalkOptions, VCS_DIRS};

/// How batches of changes are formed.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Quiet time after the last event before re-indexing.
    pub debounce_ms: u64,
    /// Longest a change waits while events keep coming.
    pub max_delay_ms: u64,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { debounce_ms: 300, max_delay_ms: 2000 }
    }
}

/// What the watcher reports.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// A batch of changed paths (`paths` files and folders, after coalescing) was brought up to
    /// date; `report` is the update's (its `generation` is the index's after the commit).
    Updated { paths: usize, report: IndexReport },
    /// Something was skipped (an unreadable file, a folder that could not be watched);
    /// watching goes on.
    Warning(String),
    /// An update failed; its paths are retried later and watching goes on.
    Error(String),
}

/// How often the thread looks at its stop flag while idle.
const TICK: Duration = Duration::from_millis(100);
/// How often missing roots are looked for (and present ones checked).
const ROOT_CHECK: Duration = Duration::from_secs(1);
/// Past this many paths, a batch is lifted to parent folders.
const MAX_BATCH_PATHS: usize = 256;
/// How long dropping a handle waits for the thread before leaving it to finish on its own.
const STOP_WAIT: Duration = Duration::from_millis(500);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Files whose change changes what the walk takes in their folder.
const IGNORE_FILES: &[&str] = &[".gitignore", ".ignore"];

/// A running watcher. Dropping it stops the watcher: the OS watches are released at once, the
/// thread is waited for up to 0.5 s, no new update starts, and nothing is reported once the
/// drop has returned. An update in progress is cancelled: it commits what it had staged (as a
/// cancelled [`Engine::index`] does), in the background if that takes longer.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    watcher: Arc<Mutex<Option<RecommendedWatcher>>>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends.
    exited: Receiver<()>,
    roots: Vec<PathBuf>,
}

impl WatchHandle {
    /// The roots being followed (the index's, canonical).
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether the watcher thread is running (it ends when the handle is dropped, or if the
    /// notification source fails for good).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + STOP_WAIT;
        // Dropping the watcher removes the OS watches and ends notify's thread, which
        // disconnects the event channel and so wakes ours. The thread holds the lock only
        // while adding watches, and stops adding when it sees the flag; if it does not let go
        // in time, it drops the watcher itself when it ends.
        loop {
            match self.watcher.try_lock() {
                Ok(mut w) => {
                    drop(w.take());
                    break;
                }
                Err(TryLockError::Poisoned(p)) => {
                    drop(p.into_inner().take());
                    break;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(TryLockError::WouldBlock) => break,
            }
        }
        let _ = self.exited.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Starts following the engine's roots (all of them, recursively), re-indexing what changes
/// until the returned handle is dropped. When it returns, the watches are in place: any change
/// made from then on is seen. Changes made before (while nobody watched) are not: run
/// [`Engine::index`] with no paths first to catch up.
///
/// Errors: the engine has no index ([`Error::NoIndex`]) or the index has no roots
/// ([`Error::InvalidInput`]); notifications are not available ([`Error::Unsupported`]).
pub fn start(engine: Arc<Engine>, opts: WatchOptions, on: Arc<dyn Fn(WatchEvent) + Send + Sync>) -> Result<WatchHandle> {
    let status = engine.status()?;
    if status.roots.is_empty() {
        return Err(Error::InvalidInput(format!(
            "the index in {} has no files or folders to watch: index some first (`ponder index PATH... --index {}`)",
            engine.dir().display(),
            engine.dir().display()
        )));
    }
    let index_dir = fs::canonicalize(engine.dir()).map_err(|e| Error::io(engine.dir(), e))?;
    let walk = engine.options().walk.clone();
    let (tx, rx) = mpsc::channel();
    let config = notify::Config::default().with_follow_symlinks(walk.follow_links);
    let watcher = RecommendedWatcher::new(tx, config)
        .map_err(|e| Error::Unsupported(format!("file-system notifications are not available: {e}")))?;
    let per_dir = RecommendedWatcher::kind() == WatcherKind::Inotify;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Arc::new(Mutex::new(Some(watcher)));
    let roots: Vec<PathBuf> = status.roots.iter().map(PathBuf::from).collect();
    let mut worker = Worker {
        engine,
        on,
        opts,
        walk,
        index_dir,
        roots: roots.iter().map(|p| Root { path: p.clone(), present: false }).collect(),
        per_dir,
        watcher: watcher.clone(),
        watched: HashSet::new(),
        listings: HashMap::new(),
        stop: stop.clone(),
        warned_limit: false,
    };
    for i in 0..worker.roots.len() {
        if !worker.attach_root(i) {
            let p = worker.roots[i].path.display().to_string();
            worker.warn(format!("{p} does not exist; watching for it to come back"));
        }
    }
    let (exit_tx, exited) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ponder-watch".into())
        .spawn(move || worker.run(rx, exit_tx))
        .map_err(|e| Error::Unsupported(format!("cannot start the watcher thread: {e}")))?;
    Ok(WatchHandle { stop, watcher, thread: Some(thread), exited, roots })
}

struct Root {
    path: PathBuf,
    /// It existed (and was watched) when last looked at.
    present: bool,
}

/// Changes collected for the next update.
#[derive(Default)]
struct Pending {
    /// Relevant event paths, as notified.
    paths: BTreeSet<PathBuf>,
    /// Resolved paths of a failed update, to retry.
    retry: BTreeSet<PathBuf>,
    /// Folders whose watches must be re-checked (their ignore rules changed).
    resync: BTreeSet<PathBuf>,
    /// Events were lost: update every root.
    rescan: bool,
    first: Option<Instant>,
    last: Option<Instant>,
    not_before: Option<Instant>,
    failures: u32,
}

impl Pending {
    fn add(&mut self, p: PathBuf) {
        self.paths.insert(p);
        self.touch();
    }

    fn touch(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the batch should be flushed (`None`: nothing pending).
    fn due(&self, opts: &WatchOptions) -> Option<Instant> {
        let first = self.first?;
        let last = self.last.unwrap_or(first);
        let due = (last + Duration::from_millis(opts.debounce_ms)).min(first + Duration::from_millis(opts.max_delay_ms));
        Some(self.not_before.map_or(due, |t| due.max(t)))
    }
}

struct Worker {
    engine: Arc<Engine>,
    on: Arc<dyn Fn(WatchEvent) + Send + Sync>,
    opts: WatchOptions,
    walk: WalkOptions,
    /// The engine's index directory, canonical.
    index_dir: PathBuf,
    roots: Vec<Root>,
    /// Watch each admitted directory non-recursively (inotify) instead of each root recursively.
    per_dir: bool,
    watcher: Arc<Mutex<Option<RecommendedWatcher>>>,
    /// Directories watched non-recursively (per-directory mode).
    watched: HashSet<PathBuf>,
    /// Names the walk takes in a directory (depth-1 listings honouring ignore files), cached
    /// until the next flush; a name missing from a cached listing lists the directory again.
    listings: HashMap<PathBuf, HashSet<OsString>>,
    stop: Arc<AtomicBool>,
    warned_limit: bool,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn warn(&self, m: String) {
        if !self.stopped() {
            (self.on)(WatchEvent::Warning(m));
        }
    }

    fn run(mut self, rx: Receiver<notify::Result<Event>>, _exit: mpsc::Sender<()>) {
        let mut pending = Pending::default();
        let mut last_check = Instant::now();
        while !self.stopped() {
            let wait = pending.due(&self.opts).map_or(TICK, |d| d.saturating_duration_since(Instant::now()).min(TICK));
            match rx.recv_timeout(wait) {
                Ok(ev) => self.on_event(ev, &mut pending),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.stopped() {
                break;
            }
            if last_check.elapsed() >= ROOT_CHECK {
                self.check_roots(&mut pending);
                last_check = Instant::now();
            }
            if pending.due(&self.opts).is_some_and(|d| Instant::now() >= d) {
                self.flush(&mut pending);
            }
        }
        let watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(watcher);
    }

    // ---- watches ----

    /// Watches root `i` (a folder's tree, or a file's parent folder); false if it is missing.
    fn attach_root(&mut self, i: usize) -> bool {
        let path = self.roots[i].path.clone();
        let Ok(meta) = fs::metadata(&path) else {
            self.roots[i].present = false;
            return false;
        };
        if meta.is_dir() {
            if self.per_dir {
                // Watch everything again (stale entries would be skipped otherwise).
                self.watched.retain(|d| !d.starts_with(&path));
                let dirs = self.tree_dirs(&path);
                self.add_watches(dirs, false);
            } else {
                self.add_watches(vec![path.clone()], true);
            }
        } else if let Some(parent) = path.parent() {
            // The parent may have been deleted and made again since it was watched.
            self.watched.remove(parent);
            self.add_watches(vec![parent.to_path_buf()], false);
        }
        self.roots[i].present = true;
        true
    }

    /// The directories under `dir` (itself included) that the indexer's walk would enter.
    fn tree_dirs(&self, dir: &Path) -> Vec<PathBuf> {
        if dir.starts_with(&self.index_dir) || ingest::is_index_dir(dir) {
            return Vec::new();
        }
        let index_dir = self.index_dir.clone();
        let mut b = self.walker(dir);
        b.filter_entry(move |e| {
            if !e.file_type().is_some_and(|t| t.is_dir()) {
                return false;
            }
            let vcs = e.depth() > 0 && VCS_DIRS.iter().any(|d| e.file_name() == *d);
            !(vcs || e.path().starts_with(&index_dir) || ingest::is_index_dir(e.path()))
        });
        b.build()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_some_and(|t| t.is_dir()))
            .map(|e| e.into_path())
            .collect()
    }

    /// A walker over `dir` with the engine's walk settings.
    fn walker(&self, dir: &Path) -> ignore::WalkBuilder {
        let mut b = ignore::WalkBuilder::new(dir);
        b.hidden(!self.walk.hidden).follow_links(self.walk.follow_links).require_git(false);
        if self.walk.no_ignore {
            b.ignore(false).git_ignore(false).git_exclude(false).git_global(false).parents(false);
        }
        b
    }

    fn add_watches(&mut self, dirs: Vec<PathBuf>, recursive: bool) {
        let new: Vec<PathBuf> = dirs.into_iter().filter(|d| recursive || !self.watched.contains(d)).collect();
        if new.is_empty() {
            return;
        }
        let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        let mut failures = Vec::new();
        let watcher = self.watcher.clone();
        {
            let mut guard = watcher.lock().unwrap_or_else(|e| e.into_inner());
            let Some(w) = guard.as_mut() else { return };
            for d in new {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                match w.watch(&d, mode) {
                    Ok(()) => {
                        if !recursive {
                            self.watched.insert(d);
                        }
                    }
                    // It went away meanwhile: its removal is an event of its own.
                    Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                    Err(e) => failures.push((d, e)),
                }
            }
        }
        for (d, e) in failures {
            self.watch_error(e, Some(&d));
        }
    }

    fn watch_error(&mut self, e: notify::Error, path: Option<&Path>) {
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            if !self.warned_limit {
                self.warned_limit = true;
                self.warn(
                    "the system's limit on watched folders was reached (on Linux, raise fs.inotify.max_user_watches); \
                     changes in some folders are missed until `ponder index` runs"
                        .into(),
                );
            }
            return;
        }
        match path {
            Some(p) => self.warn(format!("cannot watch {}: {e}", p.display())),
            None => self.warn(format!("file watching: {e}")),
        }
    }

    /// Drops `path` and everything under it from the watched set (notify removes the OS
    /// watches of deleted and moved directories itself).
    fn forget(&mut self, path: &Path) {
        if self.per_dir && self.watched.contains(path) {
            self.watched.retain(|d| !d.starts_with(path));
        }
    }

    // ---- events ----

    fn on_event(&mut self, ev: notify::Result<Event>, pending: &mut Pending) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => return self.watch_error(e, None),
        };
        if ev.need_rescan() {
            pending.rescan = true;
            pending.touch();
            return;
        }
        let kind = ev.kind;
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) | EventKind::Other => return,
            _ => {}
        }
        let both = matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::Both)));
        let gone = matches!(kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)));
        let appeared = matches!(
            kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any | RenameMode::Other))
        );
        let metadata_only = matches!(kind, EventKind::Modify(ModifyKind::Metadata(_)));
        for (n, path) in ev.paths.iter().enumerate() {
            // `Both` names the old path, then the new one.
            let (gone, appeared) = if both { (n == 0, n > 0) } else { (gone, appeared) };
            if gone {
                self.forget(path);
                for r in self.roots.iter_mut().filter(|r| r.path == *path) {
                    r.present = false;
                }
            }
            let is_dir = path.is_dir();
            if appeared && is_dir && self.per_dir && self.relevant(path).is_some() && self.admissible(path) {
                let dirs = self.tree_dirs(path);
                self.add_watches(dirs, false);
            }
            if metadata_only && is_dir {
                continue;
            }
            if let Some(p) = self.relevant(path) {
                if self.per_dir && p.as_path() != path.as_path() {
                    // An ignore file changed: the folder's watches may need to grow.
                    pending.resync.insert(p.clone());
                }
                pending.add(p);
            }
        }
    }

    /// The path an event stands for, if it may matter: under a root, outside the index
    /// directory, no version-control or (unless walked) hidden component below the root. A
    /// change to an ignore file stands for its folder.
    fn relevant(&self, path: &Path) -> Option<PathBuf> {
        let mut p = path;
        if !self.walk.no_ignore && p.file_name().is_some_and(|n| IGNORE_FILES.iter().any(|f| n == *f)) {
            p = p.parent()?;
        }
        let root = self.root_of(p)?;
        if p.starts_with(&self.index_dir) {
            return None;
        }
        let rel = p.strip_prefix(root).ok()?;
        let plain = rel.components().all(|c| match c {
            Component::Normal(s) => {
                let s = s.to_string_lossy();
                !VCS_DIRS.contains(&s.as_ref()) && (self.walk.hidden || !s.starts_with('.'))
            }
            _ => false,
        });
        plain.then(|| p.to_path_buf())
    }

    /// The deepest root `p` is at or under.
    fn root_of(&self, p: &Path) -> Option<&Path> {
        self.roots.iter().map(|r| r.path.as_path()).filter(|r| p.starts_with(r)).max_by_key(|r| r.components().count())
    }

    /// Whether the indexer's walk reaches `path` (which exists and is [`Self::relevant`]): no
    /// index directory on the way and nothing on the way ignored by ignore files.
    fn admissible(&mut self, path: &Path) -> bool {
        let Some(root) = self.root_of(path).map(Path::to_path_buf) else { return false };
        let Ok(rel) = path.strip_prefix(&root) else { return false };
        let mut cur = root.clone();
        for c in rel.components() {
            let name = c.as_os_str().to_os_string();
            let parent = cur.clone();
            cur.push(&name);
            if cur.is_dir() && ingest::is_index_dir(&cur) {
                return false;
            }
            if !self.walk.no_ignore && !self.listed(&parent, &name) {
                return false;
            }
        }
        true
    }

    /// Whether the walk takes `name` in `dir`.
    fn listed(&mut self, dir: &Path, name: &OsStr) -> bool {
        if self.listings.get(dir).is_some_and(|s| s.contains(name)) {
            return true;
        }
        let mut b = self.walker(dir);
        b.max_depth(Some(1));
        let names: HashSet<OsString> =
            b.build().filter_map(|e| e.ok()).filter(|e| e.depth() == 1).map(|e| e.file_name().to_os_string()).collect();
        let found = names.contains(name);
        self.listings.insert(dir.to_path_buf(), names);
        found
    }

    /// Roots that came back are watched and updated; roots that went away are updated (their
    /// files leave the index).
    fn check_roots(&mut self, pending: &mut Pending) {
        for i in 0..self.roots.len() {
            let path = self.roots[i].path.clone();
            let exists = path.exists();
            if !self.roots[i].present && exists {
                if self.attach_root(i) {
                    pending.add(path);
                }
            } else if self.roots[i].present && !exists {
                self.roots[i].present = false;
                self.forget(&path);
                pending.add(path);
            }
        }
    }

    // ---- batches ----

    fn flush(&mut self, pending: &mut Pending) {
        let raw = std::mem::take(&mut pending.paths);
        let resync = std::mem::take(&mut pending.resync);
        let rescan = std::mem::take(&mut pending.rescan);
        let mut targets = std::mem::take(&mut pending.retry);
        (pending.first, pending.last, pending.not_before) = (None, None, None);

        for dir in resync {
            if dir.is_dir() && self.admissible(&dir) {
                let dirs = self.tree_dirs(&dir);
                self.add_watches(dirs, false);
            }
        }
        if rescan {
            for i in 0..self.roots.len() {
                if self.roots[i].present {
                    self.attach_root(i);
                }
                targets.insert(self.roots[i].path.clone());
            }
        } else {
            let snap = self.engine.snapshot().ok();
            for p in raw {
                if let Some(t) = self.resolve(&p, snap.as_deref()) {
                    targets.insert(t);
                }
            }
        }
        self.listings.clear();
        let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        let paths = lift(outermost(targets), &roots);
        if paths.is_empty() || self.stopped() {
            return;
        }

        let n = paths.len();
        let job = IndexJob { cancel: Some(self.stop.clone()), ..Default::default() };
        let (on, stop) = (self.on.clone(), self.stop.clone());
        let mut hear = |p: Progress| {
            if let Progress::Warning(m) = p {
                if !stop.load(Ordering::SeqCst) {
                    on(WatchEvent::Warning(m));
                }
            }
        };
        let result = self.engine.update(&paths, &job, &mut hear);
        if self.stopped() {
            return;
        }
        match result {
            Ok(report) => {
                pending.failures = 0;
                (self.on)(WatchEvent::Updated { paths: n, report });
            }
            Err(Error::Cancelled) => {}
            Err(e) => {
                pending.failures += 1;
                let delay = RETRY_FIRST.saturating_mul(1 << (pending.failures - 1).min(6)).min(RETRY_MAX);
                (self.on)(WatchEvent::Error(format!(
                    "updating {n} changed path(s) failed: {e}; retrying in {} s",
                    delay.as_secs()
                )));
                pending.retry.extend(paths);
                pending.touch();
                pending.not_before = Some(Instant::now() + delay);
            }
        }
    }

    /// What the writer should look at for an event path, or `None` if nothing there can
    /// change the index.
    fn resolve(&mut self, p: &Path, snap: Option<&Snapshot>) -> Option<PathBuf> {
        match fs::metadata(p) {
            Ok(meta) => {
                if !(meta.is_file() || meta.is_dir()) || !self.admissible(p) {
                    return None;
                }
                if meta.is_file() && ingest::reader_for(p).is_none() {
                    return None;
                }
                let canon = fs::canonicalize(p).ok()?;
                if let Some(s) = snap {
                    let key = canon.to_string_lossy();
                    if excluded(s, &key) || (meta.is_file() && unchanged(s, &key, &meta)) {
                        return None;
                    }
                }
                Some(canon)
            }
            Err(_) => {
                let canon = canonical_gone(p);
                match snap {
                    Some(s) if !indexed_under(s, &canon.to_string_lossy()) => None,
                    _ => Some(canon),
                }
            }
        }
    }
}

/// The index holds this file with the same size and modification time.
fn unchanged(s: &Snapshot, key: &str, meta: &fs::Metadata) -> bool {
    s.reader.manifest.files.get(key).is_some_and(|e| e.size == meta.len() && e.mtime == mtime_ns(meta))
}

/// `ponder remove` excluded the path (or a folder above it).
fn excluded(s: &Snapshot, key: &str) -> bool {
    s.reader.manifest.excluded.iter().any(|x| is_under(key, x))
}

/// The index holds a file at or under `key`.
fn indexed_under(s: &Snapshot, key: &str) -> bool {
    let files = &s.reader.manifest.files;
    let prefix = format!("{}/", key.trim_end_matches('/'));
    files.contains_key(key) || files.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// The canonical name of a path that no longer exists: its deepest existing ancestor,
/// canonical, with the rest of the name appended.
fn canonical_gone(p: &Path) -> PathBuf {
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut cur = p;
    while let (Some(parent), Some(name)) = (cur.parent(), cur.file_name()) {
        rest.push(name);
        if let Ok(mut out) = fs::canonicalize(parent) {
            out.extend(rest.iter().rev());
            return out;
        }
        cur = parent;
    }
    p.to_path_buf()
}

/// The paths of a sorted set that are under no other path of the set.
fn outermost(set: BTreeSet<PathBuf>) -> Vec<PathBuf> {
    // Path order is by component, so everything under a path follows it directly.
    let mut out: Vec<PathBuf> = Vec::new();
    for p in set {
        if out.last().is_some_and(|l| p.starts_with(l)) {
            continue;
        }
        out.push(p);
    }
    out
}

/// Replaces the deepest paths by their folders until at most [`MAX_BATCH_PATHS`] remain (the
/// writer's cost grows with files × paths); never above or outside a root.
fn lift(mut paths: Vec<PathBuf>, roots: &[PathBuf]) -> Vec<PathBuf> {
    let depth = |p: &Path| p.components().count();
    let liftable = |p: &Path| !roots.iter().any(|r| r == p) && p.parent().is_some_and(|q| roots.iter().any(|r| q.starts_with(r)));
    while paths.len() > MAX_BATCH_PATHS {
        let Some(deepest) = paths.iter().filter(|p| liftable(p)).map(|p| depth(p)).max() else { break };
        let lifted: BTreeSet<PathBuf> = paths
            .into_iter()
            .map(|p| if depth(&p) == deepest && liftable(&p) { p.parent().unwrap().to_path_buf() } else { p })
            .collect();
        paths = outermost(lifted);
    }
    paths
}
