// An equirectangular video mapped onto the inside of a sphere: drag to look around, scroll to zoom, or show
// the flat ERP frame. three.js does the rendering; this file only wires the video, camera and pointer.
import * as THREE from "three";

const MIN_FOV = 30;
const MAX_FOV = 110;

export class PanoramaViewer {
  constructor(container) {
    this.container = container;
    this.lon = 0; // yaw in degrees, 0 = the centre column of the ERP frame
    this.lat = 0; // pitch in degrees
    this.video = document.createElement("video");
    Object.assign(this.video, { muted: true, loop: true, playsInline: true, crossOrigin: "anonymous" });
    this.video.hidden = true;

    // preserveDrawingBuffer keeps the last frame readable (screenshots, the browser tests' pixel check).
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(75, 2, 0.1, 1100);

    const sphere = new THREE.SphereGeometry(500, 96, 48);
    sphere.scale(-1, 1, 1); // look at the inside of the sphere
    this.texture = new THREE.VideoTexture(this.video);
    this.texture.colorSpace = THREE.SRGBColorSpace;
    this.scene.add(new THREE.Mesh(sphere, new THREE.MeshBasicMaterial({ map: this.texture })));

    container.append(this.renderer.domElement, this.video);
    this.#listen();
    new ResizeObserver(() => this.#resize()).observe(container);
    this.#resize();
    this.renderer.setAnimationLoop(() => this.#render());
  }

  load(url) {
    this.video.src = url;
    this.video.load();
    return this.video.play();
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
    this.video.hidden = !on;
    this.renderer.domElement.hidden = on;
  }

  get view() {
    return { lon: this.lon, lat: this.lat, fov: this.camera.fov };
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
      this.lon = drag.lon - (e.clientX - drag.x) * degreesPerPixel;
      this.lat = Math.max(-85, Math.min(85, drag.lat + (e.clientY - drag.y) * degreesPerPixel));
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
    if (!w || !h) return;
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
