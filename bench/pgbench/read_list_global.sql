SELECT * FROM presence_list_global('t42');
