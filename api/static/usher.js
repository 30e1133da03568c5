// Usher's pages: screenshots open full size, a running job's steps arrive live, values copy.
"use strict";

function openShot(event) {
  const link = event.target.closest("a.shot");
  const box = document.getElementById("lightbox");
  if (!link || !box) return;
  event.preventDefault();
  box.querySelector("img").src = link.href;
  box.showModal();
}

function copyValue(event) {
  const button = event.target.closest("button.copy");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.value).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
}

function followJob() {
  const timeline = document.getElementById("timeline");
  if (!timeline || timeline.dataset.live !== "true") return;
  const job = timeline.dataset.job;
  const source = new EventSource(`/jobs/${job}/events`);
  let loading = null;
  const reload = () => {
    loading = fetch(`/jobs/${job}/timeline`, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { timeline.innerHTML = html; })
      .catch(() => {});
    return loading;
  };
  source.addEventListener("start", reload);
  source.addEventListener("step", reload);
  source.addEventListener("end", () => {
    source.close();
    Promise.resolve(loading).then(() => window.location.reload());
  });
}

document.addEventListener("click", openShot);
document.addEventListener("click", copyValue);
document.addEventListener("DOMContentLoaded", followJob);
