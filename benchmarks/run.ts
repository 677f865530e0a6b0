// npm run bench [-- --mode readme|tuned] [options of that mode]
//
// Two modes. `readme` (the default, benchmarks/readme.ts): the programs the
// README teaches a user, beside the raw node:net and zeromq.js programs an
// application writes by hand (issue 19). `tuned` (benchmarks/tuned.ts): the
// earlier harness, whose programs are tuned for throughput (a preallocated
// payload, long warm-ups, a hand-tuned batch writer as the raw reference).
const argv = process.argv
let mode = 'readme'
for (let i = 2; i < argv.length; i++) {
  const a = argv[i]!
  if (a === '--mode' && i + 1 < argv.length) { mode = argv[i + 1]!; argv.splice(i, 2); break }
  if (a.startsWith('--mode=')) { mode = a.slice('--mode='.length); argv.splice(i, 1); break }
}
if (mode === 'tuned') await import('./tuned.ts')
else if (mode === 'readme') await import('./readme.ts')
else {
  console.error(`unknown --mode ${mode}: readme (default) or tuned`)
  process.exit(2)
}
