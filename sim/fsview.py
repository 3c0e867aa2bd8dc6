"""A container's view of the filesystem: read-only image layers under one writable upper layer.

This is overlayfs's namespace algorithm, kept apart from any cost: which entries the container
sees, what a first write copies up (the file and its missing ancestor directories), whiteouts,
opaque directories and ``redirect_dir`` renames. Every driver uses it for what the container sees
(a snapshot driver shows the same namespace, only stored differently); union drivers also read
their costs off it. It is also the model the differential test holds against real overlayfs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .image import DIR, FILE, Entry, Image, is_below, parent_of, prefixes


TOP = (None, False)  # ``lower_path``'s walk before the first component: no redirect, not hidden


class FsError(Exception):
    """An operation the filesystem refuses, with its errno name (ENOENT, EXDEV, ...)."""

    def __init__(self, errno_name: str, path: str):
        super().__init__(f"{errno_name}: {path}")
        self.errno_name = errno_name
        self.path = path


@dataclass
class CopyUp:
    """What a copy-up had to do: ancestor directories created, bytes of data, whether the data
    was copied (False for metacopy and open(O_TRUNC))."""

    path: str
    created_dirs: list[str]
    size: int
    with_data: bool
    lower_layer: int
    source: str  # the lower path the data comes from
    inode: object  # the inode in the writable layer that receives it


@dataclass
class ContainerView:
    """The merged view of one container: ``image`` below, ``upper`` (the writable layer) above.

    Names and files are apart, as in a real filesystem: ``upper_files`` maps each name of the
    writable layer to its inode, and what belongs to a file (its size, data left below by a
    metacopy, and every driver's bookkeeping) is keyed by the inode, so it follows the file
    through renames, of the file or of a directory above it, and is shared by its hard links.
    An image file's inode is ``Image.lower_inode``'s; a new file, or a lower file copied up by
    a union driver (which makes a new upper inode), gets a fresh number. ``keep_links``: a
    first write keeps the image's inode instead (snapshot drivers and full copies: the
    container's tree holds the image's inodes), so every name of a hard-linked file sees it.
    """

    image: Image
    redirect_dir: bool = False
    keep_links: bool = False
    upper_files: dict[str, object] = field(default_factory=dict)  # name -> inode
    sizes: dict[object, int] = field(default_factory=dict)  # inode -> size, for every upper file
    links: dict[object, int] = field(default_factory=dict)  # inode -> its names, where more than one
    upper_dirs: set[str] = field(default_factory=set)
    whiteouts: set[str] = field(default_factory=set)
    opaque_dirs: set[str] = field(default_factory=set)
    # upper files whose data is still below: inode -> (layer index, lower path) of that data
    metacopy: dict[object, tuple[int, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # upper dir -> lower dir it came from
    next_inode: int = 0  # the number of the next new inode
    # What a driver's lookup found at each directory it walked through (``Driver.lookup``):
    # path -> (``Entry.fields()``, the driver's probe step, whether the parent was an upper
    # directory, the walk of ``lower_path`` after the directory (``walk_down``)). That derives
    # from the state at the directory and at its ancestors, and from the flag, which lookups
    # compare; the walk reads only whiteouts, upper files, redirects and opaque directories, so
    # not even the flag. Only two kinds of change touch that state: a directory that comes up
    # into the upper layer (forgotten in ``_make_upper_dirs``: it changes ``upper_dirs`` alone,
    # which the walk of the directories below does not read), and rmdir and rename, which forget
    # everything. Every other change is at a file or a missing name, so never at a directory or
    # above one. Directories only: they are few, while the files a long run touches would grow
    # the memo without bound. Never the root (a lookup of "" walks no component).
    lookups: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)
    # The whole descent to each directory a lookup went down to (``Driver.lookup``): directory
    # -> (the steps of its every component, whether it is an upper directory, the walk of
    # ``lower_path`` after it), so that a lookup below it adds them at once and resolves only
    # its name. Each step is the memo's, under the parent flags met on the way, so a descent
    # goes when a directory on it comes up (``_forget_descents_below``) and when the memo
    # forgets everything (rmdir, rename); a new directory (mkdir) lies on no stored descent.
    descents: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    def forget_lookups(self) -> None:
        self.lookups.clear()
        self.descents.clear()

    # -- resolving ---------------------------------------------------------------------------
    def lower_path(self, path: str) -> str | None:
        """Where ``path`` would be found in the image, or None when the upper layer hides it."""
        return self.lower_below(self.walk_to_parent(path), path)

    def walk_down(self, above: tuple | None, path: str, last: bool) -> tuple | None:
        """One component of ``lower_path``'s walk: its state after ``path`` from ``above``, the
        state after the parent (``TOP`` above a top-level name). A state is (the deepest
        redirected directory on the way or None, whether an opaque directory hides the layers
        there), or None once an upper file or a whiteout hides everything below. ``last``: the
        component looked up itself, whose opacity hides only what lies below it."""
        if above is None or path in self.whiteouts or path in self.upper_files:
            return None
        if path in self.redirects:
            # an absolute redirect is followed from the layers' roots, whatever is above it (a
            # redirect deeper down under an opaque directory points back into the layers)
            return (path, False)
        if not last and path in self.opaque_dirs:
            return (above[0], True)
        return above

    def walk_to_parent(self, path: str) -> tuple | None:
        """``lower_path``'s walk at ``path``'s parent: stored for a directory a lookup walked
        through, otherwise walked from the top."""
        found = self.lookups.get(parent_of(path))
        if found is not None:
            return found[3]
        walk = TOP
        for ancestor in prefixes(path)[:-1]:
            walk = self.walk_down(walk, ancestor, False)
        return walk

    def lower_below(self, above: tuple | None, path: str) -> str | None:
        """``lower_path(path)`` from ``above``, the walk at its parent: one more step."""
        walk = self.walk_down(above, path, True)
        if walk is None or walk[1]:
            return None
        mapped = walk[0]
        return path if mapped is None else self.redirects[mapped] + path[len(mapped):]

    def stat(self, path: str) -> Entry | None:
        """``resolve(path)``'s entry, read off the lookups memo for a directory walked through
        (the entry, unlike the probe step, does not depend on the parent being upper)."""
        if path in self.upper_files:  # needs no walk (after a copy-up, the parent's is forgotten)
            return self.resolve(path, None)[0]
        found = self.lookups.get(path)
        if found is not None:
            return Entry(*found[0])
        return self.resolve(path, self.walk_to_parent(path))[0]

    def resolve(self, path: str, above: tuple | None) -> tuple[Entry | None, str | None]:
        """``stat(path)`` and ``lower_path(path)`` at once, from ``above``, the walk at the
        parent (``walk_to_parent``): a lookup needs both, per component."""
        if path == "":
            return Entry(DIR, 0, None, ""), self.lower_below(above, path)
        if above is TOP and path not in self.upper_files and path not in self.whiteouts \
                and path not in self.upper_dirs:
            # Nothing of the container's on the way (``walk_down`` hands TOP itself on while it
            # meets nothing) nor at the name (a redirected or opaque directory is an upper one):
            # the image's own entry, from its path table.
            image = self.image
            return image.entries.get(path) or image.entry(path), path
        inode = self.upper_files.get(path)
        if inode is not None:  # then lower_path is None: the upper file hides the name
            origin = self.metacopy.get(inode)
            return Entry(FILE, self.sizes[inode], None if origin is None else origin[0],
                         path if origin is None else origin[1]), None
        lower = self.lower_below(above, path)
        found = self.image.merged.get(lower) if lower is not None else None
        if path in self.upper_dirs:
            return Entry(DIR, 0, None, lower if found and found[0] == DIR else path), lower
        if found is None:
            return None, lower
        kind, size, layer = found
        return Entry(kind, size, layer, lower), lower

    def _require(self, path: str, kind: str | None = None) -> Entry:
        self._require_parent_dir(path)
        entry = self.stat(path)
        if entry is None:
            raise FsError("ENOENT", path)
        if kind == FILE and entry.kind == DIR:
            raise FsError("EISDIR", path)
        if kind == DIR and entry.kind != DIR:
            raise FsError("ENOTDIR", path)
        return entry

    def _require_parent_dir(self, path: str) -> None:
        """Path resolution walks every ancestor: the first missing one is ENOENT, the first that
        is not a directory ENOTDIR (``a/b/c`` with ``a`` a file is ENOTDIR, as in namei)."""
        if parent_of(path) in self.descents:  # a lookup went down to the parent: all directories
            return
        lookups = self.lookups
        for ancestor in prefixes(path)[:-1]:  # ancestors, top-down (cached)
            if ancestor in lookups:  # a directory a lookup walked through (the memo holds no other)
                continue
            up = self.stat(ancestor)
            if up is None:
                raise FsError("ENOENT", ancestor)
            if up.kind != DIR:
                raise FsError("ENOTDIR", ancestor)

    def children(self, path: str) -> list[str]:
        """Names inside directory ``path`` in the merged view (readdir merges every layer)."""
        return sorted(p.rpartition("/")[2] for p in self.listing() if parent_of(p) == path and p != "")

    def listing(self) -> dict[str, tuple[str, int]]:
        """The whole merged view: path -> (kind, size)."""
        view: dict[str, tuple[str, int]] = {}
        for lower, (kind, size, _) in self.image.merged.items():
            for path in self._shown_names(lower):
                view[path] = (kind, size)
        for path in self.upper_dirs:
            view[path] = (DIR, 0)
        sizes = self.sizes
        view.update({path: (FILE, sizes[inode]) for path, inode in self.upper_files.items()})
        return view

    def _shown_names(self, lower: str) -> list[str]:
        """Names under which the container sees a lower entry as itself. An upper directory
        stands for its name: a lower directory there merges into it (shown as the upper one), a
        lower file is gone (ovl_lookup_single drops a lower non-directory under an upper
        directory), though ``lower_path`` of the name, which must reach the layers below a
        merged directory, still finds it."""
        return [name for name in self._names_of(lower)
                if name not in self.upper_dirs and self.lower_path(name) == lower]

    def _names_of(self, lower: str) -> list[str]:
        """Names under which a lower entry may show: its own, and through redirected dirs."""
        names = [lower]
        for target, origin in self.redirects.items():
            if is_below(lower, origin):
                names.append(target + lower[len(origin):])
        return names

    # -- the upper layer -----------------------------------------------------------------------
    def _missing_ancestors(self, path: str) -> list[str]:
        return [d for d in prefixes(path)[:-1] if d not in self.upper_dirs]

    def _make_upper_dirs(self, path: str) -> list[str]:
        created = self._missing_ancestors(path)
        if created:
            self._forget_descents_below(created[0])  # the flags on the way change
        for directory in created:
            self.lookups.pop(directory, None)  # its entry and probe change (its names see the flag)
        self.upper_dirs.update(created)
        return created

    def _forget_descents_below(self, top: str) -> None:
        """Forget the stored descents through ``top``, a directory coming up into the upper
        layer: those at or below it, found among the view's descents or, where there are more
        of those, among the image's directories under ``top`` (a directory that is not the
        image's lies below no directory still to come up, since making it made its ancestors
        upper; unless a redirect shows it there)."""
        descents = self.descents
        below = self.image.dirs_below.get(top) if not self.redirects else None
        if below is not None and len(below) < len(descents):
            for directory in below:
                descents.pop(directory, None)
        else:
            for directory in [d for d in descents if is_below(d, top)]:
                del descents[directory]

    # -- inodes ------------------------------------------------------------------------------
    def inode_of(self, path: str, entry: Entry) -> object:
        """The inode of the file ``path`` (``entry`` is its ``stat``): its own in the upper
        layer, otherwise the image's."""
        inode = self.upper_files.get(path)
        return inode if inode is not None else self.image.lower_inode(entry.layer, entry.lower_path)

    def size_of(self, path: str) -> int:
        """The size of an upper file, 0 for a name the upper layer lacks."""
        inode = self.upper_files.get(path)
        return 0 if inode is None else self.sizes[inode]

    def _new_inode(self, size: int) -> int:
        inode = self.next_inode
        self.next_inode += 1
        self.sizes[inode] = size
        return inode

    def _link(self, path: str, inode: object) -> None:
        """Give an existing inode one more name."""
        self.upper_files[path] = inode
        self.links[inode] = self.links.get(inode, 1) + 1

    def _drop_name(self, path: str) -> None:
        """Forget an upper file's name; its inode goes with its last name."""
        inode = self.upper_files.pop(path, None)
        if inode is None:
            return
        names = self.links.pop(inode, 1)
        if names > 2:
            self.links[inode] = names - 1
        elif names == 1:
            del self.sizes[inode]
            self.metacopy.pop(inode, None)

    # -- the upper layer (files) ---------------------------------------------------------------
    def needs_copy_up(self, path: str) -> bool:
        inode = self.upper_files.get(path)
        return inode is None or inode in self.metacopy

    def copy_up(self, path: str, *, with_data: bool = True, metadata_only: bool = False) -> CopyUp | None:
        """Bring a lower file into the upper layer; None when it is already there with its data."""
        entry = self._require(path, FILE)
        inode = self.upper_files.get(path)
        if inode is not None:
            if inode in self.metacopy and not metadata_only:
                layer, source = self.metacopy.pop(inode)
                return CopyUp(path, [], entry.size, with_data, layer, source, inode)
            return None
        created = self._make_upper_dirs(path)
        size = entry.size if with_data or metadata_only else 0
        if self.keep_links:
            inode = self.image.lower_inode(entry.layer, entry.lower_path)
            self.upper_files[path] = inode
            self.sizes[inode] = size
            created += self._bring_up_links(entry.lower_path, inode)
        else:
            self.upper_files[path] = inode = self._new_inode(size)
        if metadata_only:
            self.metacopy[inode] = (entry.layer, entry.lower_path)
        return CopyUp(path, created, entry.size, with_data and not metadata_only, entry.layer, entry.lower_path,
                      inode)

    def _bring_up_links(self, lower: str, inode: object) -> list[str]:
        """The other names the container sees of an image inode just brought up (``keep_links``):
        they name the same file now. Returns the ancestor directories created for them."""
        created: list[str] = []
        for other in self.image.linked_names.get(lower, ()):
            if other == lower:
                continue
            for name in self._shown_names(other):
                created += self._make_upper_dirs(name)
                self._link(name, inode)
        return created

    def copy_up_dir(self, path: str) -> list[str]:
        """Bring a directory (and its ancestors) into the upper layer, e.g. for chmod."""
        self._require(path, DIR)
        return self._make_upper_dirs(path + "/-") if path else []

    def write(self, path: str, offset: int, nbytes: int) -> None:
        inode, sizes = self.upper_files[path], self.sizes
        if offset + nbytes > sizes[inode]:
            sizes[inode] = offset + nbytes

    def truncate(self, path: str, size: int) -> None:
        self.sizes[self.upper_files[path]] = size

    def create(self, path: str) -> list[str]:
        """A new empty file (an upper file of that name is truncated); the ancestors it needs
        are created in the upper layer."""
        self._require_parent_dir(path)
        entry = self.stat(path)
        if entry is not None and entry.kind == DIR:
            raise FsError("EISDIR", path)
        created = self._make_upper_dirs(path)
        self.whiteouts.discard(path)
        inode = self.upper_files.get(path)
        if inode is None:
            self.upper_files[path] = self._new_inode(0)
        else:
            self.sizes[inode] = 0
            self.metacopy.pop(inode, None)  # no data left to fetch from below
        return created

    def _hide(self, path: str, had_lower: bool) -> None:
        if had_lower:
            self.whiteouts.add(path)

    def unlink(self, path: str) -> list[str]:
        """Remove a file; a whiteout stands in for a lower one. Returns ancestors created."""
        self._require(path, FILE)
        lower = self.lower_path(path) if path not in self.upper_files else self._lower_behind(path)
        had_lower = lower is not None and lower in self.image.merged
        self._drop_name(path)
        created = self._make_upper_dirs(path) if had_lower else []
        self._hide(path, had_lower)
        return created

    def _lower_behind(self, path: str) -> str | None:
        """The lower path an upper entry shadows, if any."""
        parent = parent_of(path)
        if parent in self.opaque_dirs and parent not in self.redirects:
            return None
        base = self.lower_path(parent) if parent else ""
        if base is None:
            return None
        candidate = f"{base}/{path.rpartition('/')[2]}" if base else path
        return candidate if candidate in self.image.merged else None

    def mkdir(self, path: str) -> tuple[list[str], bool]:
        """Returns (ancestors created, whether the new directory is opaque)."""
        self._require_parent_dir(path)
        if self.stat(path) is not None:
            raise FsError("EEXIST", path)
        created = self._make_upper_dirs(path)
        # A directory created over a whiteout is opaque. With redirect_dir=on the kernel also
        # marks every directory created in a merged directory opaque (ovl_create_upper; it
        # skips that optimisation only while offline changes to the layers are allowed).
        opaque = path in self.whiteouts or (self.redirect_dir and self._is_merged_dir(parent_of(path)))
        self.whiteouts.discard(path)
        self.upper_dirs.add(path)
        if opaque:
            self.opaque_dirs.add(path)
        return created, opaque

    def rmdir(self, path: str) -> list[str]:
        self._require(path, DIR)
        if path == "":
            raise FsError("EBUSY", path)
        if self.children(path):
            raise FsError("ENOTEMPTY", path)
        lower = self._lower_behind(path) if path in self.upper_dirs else self.lower_path(path)
        # A whiteout only where a lower layer holds the name (ovl_lower_positive); a redirected
        # directory's lower content is reached through its redirect, not its name.
        had_lower = lower is not None and lower in self.image.merged
        self.forget_lookups()  # a directory goes
        self._drop_empty_dir(path)
        created = self._make_upper_dirs(path) if had_lower else []
        self._hide(path, had_lower)
        return created

    def _drop_empty_dir(self, path: str) -> None:
        """Forget a directory that is empty in the merged view, with what its upper part still
        held: whiteouts hiding lower entries inside it (ovl_clear_empty swaps in an empty
        opaque copy before removing or replacing it)."""
        for collection in (self.upper_dirs, self.opaque_dirs, self.whiteouts):
            collection.difference_update([p for p in collection if is_below(p, path)])
        self.redirects.pop(path, None)

    def _is_merged_dir(self, path: str) -> bool:
        """A directory with both an upper and a lower part (overlayfs's "merge" type); the root
        always is one."""
        if path == "" or path in self.redirects:
            return True
        if path in self.opaque_dirs:
            return False
        lower = self.lower_path(path) if path not in self.upper_dirs else self._lower_behind(path)
        return lower is not None and self.image.merged.get(lower, (None,))[0] == DIR

    def dir_has_lower(self, path: str) -> bool:
        """A directory that is (partly) in an image layer: renaming it needs redirect_dir."""
        if path in self.redirects:
            return True
        if path in self.upper_dirs and path in self.opaque_dirs:
            return False
        lower = self.lower_path(path) if path not in self.upper_dirs else self._lower_behind(path)
        return lower is not None and lower in self.image.merged

    def rename(self, source: str, target: str) -> tuple[CopyUp | None, list[str]]:
        """Rename a file, or a directory (EXDEV for a lower directory without redirect_dir).

        Returns the copy-up the source needed and the ancestors created for the target.
        """
        # The order of the checks is the kernel's: both parents are resolved before the source
        # is looked up (do_renameat2), the rename traps come before the type checks of
        # vfs_rename, and ovl_rename refuses to move a lower directory (EXDEV) before it
        # checks that the directory it replaces is empty.
        self._require_parent_dir(source)
        self._require_parent_dir(target)
        entry = self._require(source)
        if is_below(target, source) and target != source:
            raise FsError("EINVAL", target)
        if is_below(source, target) and target != source:
            raise FsError("ENOTEMPTY", target)
        if source == target:
            return None, []
        existing = self.stat(target)
        if existing is not None:
            if existing.kind == DIR and entry.kind != DIR:
                raise FsError("EISDIR", target)
            if existing.kind != DIR and entry.kind == DIR:
                raise FsError("ENOTDIR", target)
        if entry.kind == DIR and self.dir_has_lower(source) and not self.redirect_dir:
            raise FsError("EXDEV", source)
        if existing is not None and existing.kind == DIR and self.children(target):
            raise FsError("ENOTEMPTY", target)
        if self.keep_links and existing is not None and existing.kind == FILE == entry.kind \
                and self.inode_of(source, entry) == self.inode_of(target, existing):
            return None, []  # two names of one file: rename(2) does nothing (a union's lower
            # hard links are two inodes of the overlay once copy-up breaks links: ovl_hash_bylower)
        self.forget_lookups()  # a directory moves or is replaced, or a file replaces a name
        if entry.kind == DIR:
            return None, self._rename_dir(source, target, existing is not None)
        copy = self.copy_up(source)
        source_had_lower = self._lower_behind(source) is not None
        inode = self.upper_files.pop(source)  # the name moves; the inode and all it holds stay
        created = self._make_upper_dirs(target)
        if existing is not None and existing.kind == DIR:
            self.upper_dirs.discard(target)
            self.opaque_dirs.discard(target)
        self._drop_name(target)  # a file replaced loses that name
        self.whiteouts.discard(target)
        self.upper_files[target] = inode
        self._hide(source, source_had_lower)
        return copy, created

    def _rename_dir(self, source: str, target: str, replace: bool) -> list[str]:
        has_lower = self.dir_has_lower(source)
        # ovl_rename: a pure upper directory moved into a merged directory is marked opaque, so
        # that lower entries of the same names there cannot show through it.
        opaque = not has_lower and source not in self.opaque_dirs and self._is_merged_dir(parent_of(target))
        # The old name gets a whiteout only if a lower layer holds that name (ovl_lower_positive),
        # not merely because the directory has lower content through a redirect.
        lower_positive = self._lower_behind(source) is not None
        # ovl_copy_up(old) first: a lower directory comes up with its ancestors (the whiteout
        # left at the old name needs them too).
        created = self.copy_up_dir(source) if has_lower else []
        created += self._make_upper_dirs(target)
        if replace:
            self._drop_empty_dir(target)
        if has_lower:
            origin = self.redirects.get(source) or self.lower_path(source) or source
            self.upper_dirs.add(source)
        moved = lambda p: target + p[len(source):]  # noqa: E731
        for collection in (self.upper_dirs, self.whiteouts, self.opaque_dirs):
            inside = {p for p in collection if is_below(p, source)}
            collection.difference_update(inside)
            collection.update(moved(p) for p in inside)
        for mapping in (self.upper_files, self.redirects):  # names move; inodes stay what they are
            for path in [p for p in mapping if is_below(p, source)]:
                mapping[moved(path)] = mapping.pop(path)
        if has_lower:
            self.redirects[target] = origin
        if opaque:
            self.opaque_dirs.add(target)
        self.whiteouts.discard(target)
        self._hide(source, lower_positive)
        return created

    # -- accounting ----------------------------------------------------------------------------
    @property
    def upper_bytes(self) -> int:
        """Bytes of regular files in the writable layer (what ``docker ps -s`` calls SIZE): each
        inode once, as moby counts a hard-linked file."""
        return sum(size for inode, size in self.sizes.items() if inode not in self.metacopy)

    def file_bytes(self) -> int:
        """Bytes of every file the container sees, a hard-linked file once (what a copy of
        the tree that keeps hard links holds)."""
        image, inodes = self.image, {}
        for lower, (kind, size, layer) in image.merged.items():
            if kind == FILE and self._shown_names(lower):
                inodes[image.lower_inode(layer, lower)] = size
        inodes.update((inode, self.sizes[inode]) for inode in self.upper_files.values())
        return sum(inodes.values())

    def upper_paths(self) -> dict[str, str]:
        """Every path present in the upper directory, with its kind (file, dir, whiteout)."""
        paths = {p: FILE for p in self.upper_files}
        paths.update({p: DIR for p in self.upper_dirs})
        paths.update({p: "whiteout" for p in self.whiteouts})
        return paths
