// The one check every file read from a model directory goes through (config.json, weights, the
// tokenizer files): it must be a regular file inside the directory. A symlink leading out is refused
// before anything is read (its bytes never reach an error message), and a FIFO, socket or device is
// refused before open() could block start-up.
import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from './errors.ts';

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * Directories a model file may really live in: the model dir, plus the repo's `blobs/` when the dir is a
 * Hugging Face cache snapshot (whose files are symlinks into ../../blobs).
 */
function allowedRoots(root: string): string[] {
  const roots = [root];
  if (path.basename(path.dirname(root)) === 'snapshots') {
    const blobs = path.join(path.dirname(path.dirname(root)), 'blobs');
    if (existsSync(blobs)) roots.push(realpathSync(blobs));
  }
  return roots;
}

/**
 * Resolves `name` inside model dir `dir`, rejecting absolute names, `..` escapes, symlinks leading out
 * and anything but a regular file. `referrer` is the file named in errors (the index for shard names);
 * `what` says which entry referenced it. The error code defaults to DSV_ERR_CONFIG for config.json and
 * DSV_ERR_CHECKPOINT otherwise.
 */
export function resolveModelFile(dir: string, name: string, referrer: string, what: string, code?: 'DSV_ERR_CONFIG' | 'DSV_ERR_CHECKPOINT'): string {
  const errorCode = code ?? (referrer === 'config.json' ? 'DSV_ERR_CONFIG' : 'DSV_ERR_CHECKPOINT');
  const subject = name === referrer ? 'file' : `${what}: "${name}"`;
  const bad = (msg: string): never => {
    throw new CheckpointError(errorCode, referrer, `${subject} ${msg}`);
  };
  if (name === '' || name.includes('\0') || path.isAbsolute(name)) bad('is not a relative file name');
  const root = realpathSync(dir);
  const candidate = path.resolve(root, name);
  if (!isInside(root, candidate)) bad(`resolves outside the model directory ${root}`);
  if (!existsSync(candidate)) bad(`not found in ${root}`);
  const real = realpathSync(candidate);
  if (!allowedRoots(root).some((r) => isInside(r, real))) bad(`is a symlink to ${real}, outside the model directory ${root}`);
  if (!statSync(real).isFile()) bad('is not a regular file');
  return real;
}

/** True when `name` exists in `dir` as anything at all (a dangling symlink or a FIFO too), so it gets checked. */
export function modelFileExists(dir: string, name: string): boolean {
  try {
    lstatSync(path.join(dir, name));
    return true;
  } catch {
    return false;
  }
}
