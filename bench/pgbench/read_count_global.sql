SELECT presence_count_global('t42');
