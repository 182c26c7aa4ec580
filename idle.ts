setTimeout(() => {}, 3000);
