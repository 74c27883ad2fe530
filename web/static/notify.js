// Telling the reader that something new happened: an opt-in beep, and a browser notification while the page is in the background.

let audio = null;

function audioContext() {
  if (!audio) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    audio = new Ctx();
  }
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

/** Two short tones, high then low. */
export function beep() {
  const ctx = audioContext();
  if (!ctx) return;
  const t = ctx.currentTime;
  for (const [start, freq] of [[0, 880], [0.18, 660]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t + start);
    gain.gain.exponentialRampToValueAtTime(0.25, t + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.16);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + start);
    osc.stop(t + start + 0.17);
  }
}

/** A browser notification, when the page is in the background and the reader allowed them;
 * a click on it brings the page to the front. */
export function notifyInBackground(title, body, tag) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(title, { body, tag });
    n.onclick = () => { window.focus(); n.close(); };
  } catch (e) { /* some browsers allow notifications from a service worker only */ }
}

/**
 * The reader's opt-in: the checkbox `box` (remembered in this browser as `storageKey`)
 * and `stateLine`, which says what the browser lets through. Permission for notifications
 * is asked when the box is ticked, and the sound is readied in that click.
 */
export function setupOptIn(box, stateLine, storageKey = "callcost.notify") {
  const show = () => {
    if (!box.checked) { stateLine.textContent = ""; return; }
    if (!("Notification" in window)) stateLine.textContent = "(sound only: this browser has no notifications)";
    else if (Notification.permission === "granted") stateLine.textContent = "(on)";
    else if (Notification.permission === "denied") stateLine.textContent = "(sound only: notifications are blocked for this site)";
    else stateLine.textContent = "(sound only until notifications are allowed)";
  };
  let stored = false;
  try { stored = localStorage.getItem(storageKey) === "1"; } catch (e) { /* private mode */ }
  box.checked = stored;
  box.addEventListener("change", async () => {
    try { localStorage.setItem(storageKey, box.checked ? "1" : "0"); } catch (e) { /* private mode */ }
    if (box.checked) {
      audioContext(); // created in the click, so that the browser lets it play
      if ("Notification" in window && Notification.permission === "default") {
        try { await Notification.requestPermission(); } catch (e) { /* old browsers: callback form */ }
      }
    }
    show();
  });
  // a stored opt-in: the browser lets sound play only after the first click on the page
  document.addEventListener("click", () => { if (box.checked) audioContext(); }, { once: true });
  show();
}
