// An equirectangular picture or video mapped onto the inside of a sphere: drag to look around, scroll to zoom,
// turn the phone, or enter VR; or show the flat ERP frame. three.js renders; this file wires sources and input.
import * as THREE from "three";

const MIN_FOV = 30;
const MAX_FOV = 110;
const MAX_LAT = 85;
const DEG = 180 / Math.PI;

// Device orientation (alpha, beta, gamma) to a camera quaternion, as three.js's former DeviceOrientationControls:
// the camera looks out of the back of the phone, corrected for the screen's rotation.
const BACK_OF_PHONE = new THREE.Quaternion(-Math.sqrt(0.5), 0, 0, Math.sqrt(0.5));
const SCREEN_AXIS = new THREE.Vector3(0, 0, 1);

function phoneDirection({ alpha, beta, gamma }) {
  const q = new THREE.Quaternion().setFromEuler(new THREE.Euler(beta / DEG, alpha / DEG, -gamma / DEG, "YXZ"));
  const screenAngle = (screen.orientation ? screen.orientation.angle : window.orientation || 0) / DEG;
  q.multiply(BACK_OF_PHONE).multiply(new THREE.Quaternion().setFromAxisAngle(SCREEN_AXIS, -screenAngle));
  const dir = new THREE.Vector3(0, 0, -1).applyQuaternion(q);
  // the inverse of #render's lookAt direction
  return { lon: Math.atan2(-dir.z, -dir.x) * DEG, lat: Math.asin(Math.max(-1, Math.min(1, dir.y))) * DEG };
}

export class PanoramaViewer {
  constructor(container) {
    this.container = container;
    this.lon = 0; // yaw in degrees, 0 = the centre column of the ERP frame, positive turns right
    this.lat = 0; // pitch in degrees
    this.source = "none"; // "image" (a preview while the job runs) or "video" (the result)
    this.previews = 0; // preview images shown so far
    this.generation = 0; // bumped by clear(), so a preview still decoding for the previous job is dropped
    this.orientation = null; // {offset} while the phone's turning drives the view
    this.video = Object.assign(document.createElement("video"), {
      muted: true,
      loop: true,
      playsInline: true,
      preload: "auto",
      crossOrigin: "anonymous",
    });
    this.image = Object.assign(document.createElement("img"), { alt: "the job's live preview (equirectangular)" });
    this.video.hidden = this.image.hidden = true;
    // Says what the empty sphere waits for (or why it stays empty); hidden once a picture or the clip shows.
    this.note = Object.assign(document.createElement("p"), { className: "viewer-note" });
    this.note.setAttribute("role", "status");

    // preserveDrawingBuffer keeps the last frame readable (screenshots, the browser tests' pixel check).
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.renderer.xr.enabled = true;
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(75, 2, 0.1, 1100);

    const sphere = new THREE.SphereGeometry(500, 96, 48);
    sphere.scale(-1, 1, 1); // look at the inside of the sphere
    this.videoTexture = new THREE.VideoTexture(this.video);
    this.videoTexture.colorSpace = THREE.SRGBColorSpace;
    this.imageTexture = null;
    this.material = new THREE.MeshBasicMaterial({ color: 0x0b0d12 });
    this.scene.add(new THREE.Mesh(sphere, this.material));
    // The clip swaps in only once it has a frame, so the last preview stays up while the MP4 loads.
    this.video.addEventListener("loadeddata", () => this.#show("video", this.videoTexture));

    container.append(this.renderer.domElement, this.video, this.image, this.note);
    this.#listen();
    new ResizeObserver(() => this.#resize()).observe(container);
    this.#resize();
    this.renderer.setAnimationLoop(() => this.#render());
  }

  // A still ERP picture (a data: URL or a link), e.g. the job's preview while it denoises.
  async showImage(url) {
    const generation = this.generation;
    const picture = new Image();
    picture.src = url;
    await picture.decode();
    if (this.source === "video" || generation !== this.generation) return; // the result came first, or another job
    const texture = new THREE.Texture(picture);
    texture.colorSpace = THREE.SRGBColorSpace;
    texture.needsUpdate = true;
    this.imageTexture?.dispose();
    this.imageTexture = texture;
    this.image.src = url;
    this.previews += 1;
    this.#show("image", texture);
  }

  load(url) {
    this.video.src = url;
    this.video.load();
    return this.video.play();
  }

  // Back to an empty sphere (another job was opened, or this one ended without a video).
  clear() {
    this.generation += 1;
    this.video.removeAttribute("src");
    this.video.load();
    this.imageTexture?.dispose();
    this.imageTexture = null;
    this.previews = 0;
    this.source = "none";
    this.material.map = null;
    this.material.color.set(0x0b0d12);
    this.material.needsUpdate = true;
    this.#sync();
  }

  // The note shown while the sphere is empty ("" for none).
  set message(text) {
    this.note.textContent = text;
    this.#sync();
  }

  togglePlay() {
    if (this.video.paused) return this.video.play();
    this.video.pause();
  }

  set loop(on) {
    this.video.loop = on;
  }

  // Flat mode shows the ERP frame itself, seam and all; sphere mode hides it.
  set flat(on) {
    this.isFlat = on;
    this.renderer.domElement.hidden = on;
    this.#sync();
  }

  lookAt(lon, lat = 0) {
    if (this.orientation) this.orientation.offset += lon - this.lon;
    this.lon = lon;
    this.lat = lat;
  }

  get view() {
    return {
      lon: this.lon,
      lat: this.lat,
      fov: this.camera.fov,
      source: this.source,
      previews: this.previews,
      orientation: Boolean(this.orientation),
    };
  }

  // Look around by turning the phone. iOS asks the user first, and only from a tap: call this from a click handler.
  async enableOrientation() {
    const Event = window.DeviceOrientationEvent;
    if (!Event) throw new Error("this browser reports no device orientation");
    if (typeof Event.requestPermission === "function" && (await Event.requestPermission()) !== "granted") {
      throw new Error("motion access was refused; allow it in the browser's settings to look around by turning");
    }
    this.orientation = { offset: null };
    this.onOrientation = (e) => {
      if (e.alpha == null || !this.orientation) return;
      const phone = phoneDirection(e);
      // the view starts where it is; turning moves it from there
      if (this.orientation.offset == null) this.orientation.offset = this.lon - phone.lon;
      this.lon = phone.lon + this.orientation.offset;
      this.lat = Math.max(-MAX_LAT, Math.min(MAX_LAT, phone.lat));
    };
    window.addEventListener("deviceorientation", this.onOrientation);
  }

  disableOrientation() {
    window.removeEventListener("deviceorientation", this.onOrientation);
    this.orientation = null;
  }

  static async vrSupported() {
    return Boolean(navigator.xr && (await navigator.xr.isSessionSupported("immersive-vr").catch(() => false)));
  }

  // An immersive WebXR session; the headset then drives the camera. Resolves when the session ends.
  async enterVR() {
    const session = await navigator.xr.requestSession("immersive-vr", { optionalFeatures: ["local-floor"] });
    await this.renderer.xr.setSession(session);
    this.video.play().catch(() => {});
    return new Promise((resolve) => session.addEventListener("end", resolve, { once: true }));
  }

  #show(source, texture) {
    this.source = source;
    this.material.map = texture;
    this.material.color.set(0xffffff);
    this.material.needsUpdate = true;
    this.#sync();
  }

  // Which element shows the source: the sphere's canvas, or the flat video or picture; the note while empty.
  #sync() {
    this.video.hidden = !(this.isFlat && this.source === "video");
    this.image.hidden = !(this.isFlat && this.source === "image");
    this.note.hidden = this.source !== "none" || !this.note.textContent;
  }

  #listen() {
    const canvas = this.renderer.domElement;
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, lon: this.lon, lat: this.lat };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const degreesPerPixel = this.camera.fov / canvas.clientHeight;
      const lon = drag.lon - (e.clientX - drag.x) * degreesPerPixel;
      this.lookAt(lon, Math.max(-MAX_LAT, Math.min(MAX_LAT, drag.lat + (e.clientY - drag.y) * degreesPerPixel)));
    });
    const stop = () => (drag = null);
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    canvas.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        this.camera.fov = Math.max(MIN_FOV, Math.min(MAX_FOV, this.camera.fov + e.deltaY * 0.05));
        this.camera.updateProjectionMatrix();
      },
      { passive: false },
    );
  }

  #resize() {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (!w || !h || this.renderer.xr.isPresenting) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  #render() {
    // lon 0 faces the ERP frame's centre column: u = 0.5 lies on -x once the sphere is mirrored.
    const phi = THREE.MathUtils.degToRad(90 - this.lat);
    const theta = THREE.MathUtils.degToRad(this.lon);
    this.camera.lookAt(-Math.sin(phi) * Math.cos(theta), Math.cos(phi), -Math.sin(phi) * Math.sin(theta));
    this.renderer.render(this.scene, this.camera);
  }
}
